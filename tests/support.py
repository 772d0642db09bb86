"""Test helpers: real processes and servers, started and cleaned up by fixtures.

Everything listens on 127.0.0.1 only. Nothing here sleeps to synchronise:
`wait_until` polls a condition against a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import aiormq
import orjson
from aiohttp import web
from multidict import CIMultiDictProxy
from pamqp import commands as spec
from yarl import URL

from push_service.config import Settings
from push_service.parking import Ladder, service_topology
from push_service.redis_client import connect
from push_service.reports import ReportQueues
from push_service.schedule import scheduled_queues
from push_service.status import StatusStore, to_record
from push_service.vapid import generate_private_key, private_key_raw_b64, public_key_b64

ROOT = Path(__file__).resolve().parent.parent
PUSH_SERVER_JS = ROOT / "tests/pushserver/node_modules/web-push-testing/src/bin/server.js"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/0"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def wait_until(
    condition: Callable[[], Any],
    timeout: float = 20.0,
    interval: float = 0.05,
    message: str = "condition",
) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        result = condition()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        last = result
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


@dataclass
class VapidPair:
    private: str
    public: str

    @classmethod
    def generate(cls) -> VapidPair:
        key = generate_private_key()
        return cls(private_key_raw_b64(key), public_key_b64(key))


# --- HTTP answers ------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    text: str

    @property
    def json(self) -> Any:
        return orjson.loads(self.text)


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str | URL,
    **kwargs: Any,
) -> Answer:
    kwargs.setdefault("allow_redirects", False)
    async with session.request(method, url, **kwargs) as response:
        return Answer(response.status, response.headers, await response.text())


def assert_error(answer: Answer, status: int, code: str | None = None, what: str = "") -> None:
    """A refusal: the status, a JSON body naming the error and saying what is wrong."""
    assert answer.status == status, f"{what}: {answer.status} {answer.text}"
    assert answer.headers["Content-Type"].startswith("application/json"), what
    body = answer.json
    assert isinstance(body, dict), what
    assert isinstance(body.get("error"), str) and body["error"], f"{what}: {body}"
    assert isinstance(body.get("detail"), str) and body["detail"], f"{what}: {body}"
    if code is not None:
        assert body["error"] == code, f"{what}: {body}"


# --- status records ---------------------------------------------------------------------


FINAL = ("sent", "failed")


async def notification_record(base_url: str, notification_id: str) -> dict[str, Any] | None:
    """`GET /notifications/{id}`: the record, or None while it is unknown (404)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base_url}/notifications/{notification_id}") as response:
            if response.status == 404:
                return None
            assert response.status == 200, await response.text()
            record: dict[str, Any] = await response.json()
            return record


async def final_record(base_url: str, notification_id: str, timeout: float = 30) -> dict[str, Any]:
    """Wait until the API reports the notification `sent` or `failed`; returns the record."""

    async def done() -> dict[str, Any] | None:
        record = await notification_record(base_url, notification_id)
        return record if record and record["status"] in FINAL else None

    return await wait_until(done, timeout, message=f"{notification_id} to finish")


async def stored_record(client: Any, prefix: str, notification_id: str) -> dict[str, Any]:
    """The record read straight from Redis, as a peer service would; {} when absent."""
    raw = await client.hgetall(f"{prefix}notification:{notification_id}")
    return to_record(raw) if raw else {}


@contextlib.asynccontextmanager
async def status_store(name: str, ttl: int) -> AsyncIterator[StatusStore]:
    """A StatusStore on the real Redis under a unique prefix; its keys are deleted after."""
    client = connect(REDIS_URL)
    prefix = unique(name) + ":"
    try:
        yield StatusStore(client, prefix=prefix, ttl=ttl)
    finally:
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            await client.delete(key)
        await client.aclose()


# --- RabbitMQ ---------------------------------------------------------------------------


class Rabbit:
    """A test client of the real broker: publish, count, fetch, delete."""

    def __init__(self, connection: aiormq.abc.AbstractConnection, url: str = RABBITMQ_URL):
        self.connection = connection
        self.url = url
        self.channel: aiormq.abc.AbstractChannel | None = None

    async def _channel(self) -> aiormq.abc.AbstractChannel:
        if self.channel is None or self.channel.is_closed:
            if self.connection.is_closed:
                self.connection = await aiormq.connect(self.url)
            self.channel = await self.connection.channel(publisher_confirms=True)
        return self.channel

    async def publish(self, queue: str, message: dict[str, Any] | bytes, **props: Any) -> None:
        body = message if isinstance(message, bytes) else orjson.dumps(message)
        channel = await self._channel()
        properties = spec.Basic.Properties(delivery_mode=2, **props)
        async with asyncio.timeout(10):
            confirm = await channel.basic_publish(body, routing_key=queue, properties=properties)
        assert isinstance(confirm, spec.Basic.Ack)

    async def declare(self, queue: str) -> None:
        """Declare a queue as peers do (durable, no arguments); the service adopts it."""
        channel = await self._channel()
        await channel.queue_declare(queue, durable=True)

    async def count(self, queue: str) -> int:
        channel = await self._channel()
        ok = await channel.queue_declare(queue, passive=True)
        return int(ok.message_count or 0)

    async def get(self, queue: str) -> aiormq.abc.DeliveredMessage | None:
        """Take one message off a queue (acked), or None when it is empty."""
        channel = await self._channel()
        message = await channel.basic_get(queue, no_ack=True)
        return message if message.body or isinstance(message.delivery, spec.Basic.GetOk) else None

    async def delete(self, *queues: str) -> None:
        channel = await self._channel()
        for queue in queues:
            with contextlib.suppress(Exception):
                await channel.queue_delete(queue)


@contextlib.asynccontextmanager
async def rabbit_client(url: str = RABBITMQ_URL) -> AsyncIterator[Rabbit]:
    connection = await aiormq.connect(url)
    try:
        yield Rabbit(connection, url)
    finally:
        with contextlib.suppress(Exception):
            await connection.close()


# --- the independent push service (web-push-testing) ------------------------------------


@dataclass
class PushServer:
    """web-push-testing: verifies VAPID, decrypts, and keeps what it received."""

    base_url: str
    session: aiohttp.ClientSession

    async def subscribe(self, vapid_public_key: str) -> tuple[dict[str, Any], str]:
        """A new subscription bound to our VAPID key; returns (PushSubscription, clientHash)."""
        body = {"userVisibleOnly": "true", "applicationServerKey": vapid_public_key}
        async with self.session.post(f"{self.base_url}/subscribe", json=body) as response:
            assert response.status == 200, await response.text()
            data = (await response.json())["data"]
        subscription = {
            "endpoint": data["endpoint"],
            "expirationTime": None,
            "keys": {"p256dh": data["keys"]["p256dh"], "auth": data["keys"]["auth"]},
        }
        return subscription, data["clientHash"]

    async def messages(self, client_hash: str, *, receipts: bool = False) -> list[dict[str, Any]]:
        """The payloads received, less their `receipt` URL unless `receipts` (each
        payload must have one: it differs per device and run, so tests compare the rest)."""
        url = f"{self.base_url}/get-notifications"
        async with self.session.post(url, json={"clientHash": client_hash}) as response:
            assert response.status == 200, await response.text()
            raw = (await response.json())["data"]["messages"]
        payloads = [orjson.loads(m) for m in raw]
        if not receipts:
            for payload in payloads:
                if isinstance(payload, dict) and "receipt" in payload:
                    assert "/receipts/" in payload.pop("receipt"), payload
        return payloads

    async def expire(self, client_hash: str) -> None:
        url = f"{self.base_url}/expire-subscription/{client_hash}"
        async with self.session.post(url) as response:
            assert response.status == 200


@contextlib.asynccontextmanager
async def push_server() -> AsyncIterator[PushServer]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(PUSH_SERVER_JS),
        str(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://localhost:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            server = PushServer(base_url, session)

            async def up() -> bool:
                try:
                    async with session.post(f"{base_url}/status") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(up, 20, message="web-push-testing to listen")
            yield server
    finally:
        proc.terminate()
        await proc.wait()


# --- fake HTTP servers: the User Service, a push service that misbehaves on cue ---------


@dataclass
class StubServer:
    """A small aiohttp server that records requests and answers from a script."""

    base_url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Answers to give in order (status, headers); the last one repeats.
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=lambda: [(200, {})])
    request_times: list[float] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.request_times.append(time.monotonic())
        self.requests.append(
            {
                "path": request.path,
                "headers": dict(request.headers),
                "body": body,
                # By content type, not by peeking: an encrypted push body starts with a
                # random salt, and 1 in 256 of those begins with "{".
                "json": orjson.loads(body) if request.content_type == "application/json" else None,
            }
        )
        index = min(len(self.requests) - 1, len(self.answers) - 1)
        status, headers = self.answers[index]
        return web.Response(status=status, headers=headers, text="{}")


@contextlib.asynccontextmanager
async def stub_server(
    answers: list[tuple[int, dict[str, str]]] | None = None,
) -> AsyncIterator[StubServer]:
    stub = StubServer()
    if answers is not None:
        stub.answers = answers
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", stub.handle)
    async with serve_app(app) as stub.base_url:
        yield stub


@contextlib.asynccontextmanager
async def serve_app(app: web.Application, **runner_options: Any) -> AsyncIterator[str]:
    """Serve an aiohttp app on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None, **runner_options)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# --- the service itself, as a real subprocess --------------------------------------------


@dataclass
class Service:
    """A running `python -m push_service` with its own queue and Redis prefix."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return int(self.env["PORT"])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def queue(self) -> str:
        return self.env["RABBITMQ_QUEUE_NAME"]

    @property
    def prefix(self) -> str:
        return self.env["REDIS_KEY_PREFIX"]

    @property
    def queues(self) -> list[str]:
        """Every queue the service declares: main, dead letters and delay steps."""
        settings = Settings.from_env(self.env, env_file=None)
        ladder = Ladder(settings.push_retry_ladder_seconds)
        reports = ReportQueues(
            self.queue,
            settings.rabbitmq_queue_type,
            Ladder(settings.user_service_report_retry_seconds),
        )
        queues = {**scheduled_queues(settings), **reports.declarations()}
        topology = service_topology(self.queue, settings.rabbitmq_queue_type, ladder, queues=queues)
        return topology.queues

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "push_service"],
            env=self.env,
            stdout=log,
            stderr=log,
            cwd=self.log_path.parent,
        )

    async def wait_ready(self, timeout: float = 30.0) -> None:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"service exited {self.proc.returncode}:\n{self.logs()}")
                try:
                    async with session.get(f"{self.base_url}/ready") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(ready, timeout, message="the service to be ready")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    async def wait_exit(self, timeout: float = 60.0) -> int:
        proc = self.proc
        assert proc is not None
        await wait_until(lambda: proc.poll() is not None, timeout, message="the service to exit")
        return proc.returncode

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await self.wait_exit(60)
            except AssertionError:
                self.proc.kill()
                self.proc.wait()


def service_env(tmp_path: Path, vapid: VapidPair, **overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RABBITMQ_", "REDIS_", "VAPID_", "PUSH_", "USER_SERVICE"))
    }
    env.update(
        {
            "PORT": str(free_port()),
            "HOST": "127.0.0.1",
            "NODE_ENV": "development",
            "LOG_LEVEL": "INFO",
            "RABBITMQ_URL": RABBITMQ_URL,
            "RABBITMQ_QUEUE_NAME": unique("test.push"),
            "REDIS_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": unique("test") + ":",
            "VAPID_PRIVATE_KEY": vapid.private,
            "VAPID_PUBLIC_KEY": vapid.public,
            "VAPID_EMAIL": "ops@example.com",
            "PUSH_ALLOW_HTTP": "true",
            "PUSH_ENDPOINT_ALLOWLIST": "localhost,127.0.0.1",
            "SHUTDOWN_GRACE_SECONDS": "10",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


# --- a fast local push sink, one endpoint per notification -------------------------------


def device_keys() -> dict[str, str]:
    """Keys of a made-up browser: a P-256 point and a 16-byte auth secret."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {"p256dh": b64url(point), "auth": b64url(os.urandom(16))}


def b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class PushSink:
    """Accepts pushes at /push/{name} with 201 (after `delay` seconds) and counts them."""

    base_url: str = ""
    delay: float = 0.0
    hits: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.hits.values())

    def endpoint(self, name: str) -> str:
        return f"{self.base_url}/push/{name}"

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)  # the push service being slow, not a sync
        name = request.match_info["name"]
        self.hits[name] = self.hits.get(name, 0) + 1
        return web.Response(status=201)


@contextlib.asynccontextmanager
async def push_sink(delay: float = 0.0) -> AsyncIterator[PushSink]:
    async with serve_sink(PushSink(delay=delay)) as sink:
        yield sink


Sink = TypeVar("Sink", bound=PushSink)


@contextlib.asynccontextmanager
async def serve_sink(sink: Sink) -> AsyncIterator[Sink]:
    """Serve a PushSink (or a subclass of it) on a free loopback port."""
    app = web.Application()
    app.router.add_post("/push/{name}", sink.handle)
    async with serve_app(app) as sink.base_url:
        yield sink


# --- the operator scripts in scripts/, as subprocesses --------------------------------


@dataclass
class ScriptResult:
    code: int
    out: str
    err: str

    @property
    def both(self) -> str:
        return self.out + self.err

    def json(self) -> Any:
        return orjson.loads(self.out)


def script_env(**overrides: str) -> dict[str, str]:
    """The caller's environment without service settings, plus `overrides`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RABBITMQ_", "REDIS_", "VAPID_", "PUSH_", "NODE_ENV"))
    }
    env.update(overrides)
    return env


async def run_script(
    script: str,
    *args: str,
    cwd: Path,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> ScriptResult:
    """Run `python scripts/<script>.py args...` (cwd isolates it from any .env)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "scripts" / f"{script}.py"),
        *args,
        cwd=cwd,
        env=script_env(**(env or {})),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return ScriptResult(proc.returncode, out.decode(), err.decode())


def assert_clean_failure(result: ScriptResult, *secrets: str) -> None:
    """A failure reported as one `error:` line, no traceback, no secret."""
    assert result.code in (1, 2), result
    assert "Traceback" not in result.both, result.both
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "error:" in lines[0]
    for secret in secrets:
        assert secret not in result.both


def connections_named(containing: str) -> list[str]:
    """The broker's connections (pids) whose name contains `containing`."""
    listing = rabbitmqctl("list_connections", "pid", "client_properties", "--no-table-headers")
    return [line.split("\t", 1)[0] for line in listing.splitlines() if containing in line]


def close_connections(pids: list[str]) -> None:
    """Close these connections only, as the broker would (CONNECTION_FORCED)."""
    for pid in pids:
        rabbitmqctl("close_connection", pid, "closed by a test")


def rabbitmqctl(*args: str) -> str:
    result = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"rabbitmqctl {args}: {result.stderr}"
    return result.stdout


class GoneLog:
    """Stands in for the lifecycle's `gone` in pusher and delivery tests: records what the
    pusher hands on. The durable path behind it is tested in test_lifecycle/test_relay."""

    def __init__(self, outcome: str = "queued") -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, str, str, int | None, bool]] = []

    async def __call__(self, n: Any, device: Any, error: Any) -> str:
        self.calls.append(
            (n.user_id, device.endpoint, error.reason, error.status_code, n.user_verified)
        )
        return self.outcome
