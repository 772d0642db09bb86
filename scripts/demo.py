#!/usr/bin/env -S sh -c 'exec "${0%/*}/../.venv/bin/python" "$0" "$@"'
"""See a push arrive on this machine, end to end, with no browser (`make demo`).

1. Starts web-push-testing (the npm package the tests use, in tests/pushserver/):
   a local push service that checks the VAPID signature and decrypts what it gets.
2. Starts push_service on a free port with a queue of its own, configured as
   `make run` is (the environment, then .env; without VAPID keys, the development
   pair in .vapid-dev-key.pem, generated on first use), and, for this process only,
   PUSH_ALLOW_HTTP=true and PUSH_ENDPOINT_ALLOWLIST=localhost,127.0.0.1, because
   web-push-testing serves plain http on localhost, which the defaults refuse.
3. Subscribes a device at web-push-testing with the service's VAPID public key
   (GET /vapid_public_key), as a browser's pushManager.subscribe() does.
4. Publishes a notification for that device to the queue, as a peer service does:
   persistent, with a publisher confirm.
5. Waits for the outcome and prints what web-push-testing decrypted and the status
   record (GET /notifications/{id}).

It stops what it started and deletes its queues and status record when it ends.
Needs RabbitMQ and Redis on the configured URLs, Node.js, and tests/pushserver's npm
packages: `make demo` installs and starts all of it.

Exit codes: 0 the push arrived, 1 it did not (the service's log is shown), 2 bad
usage or configuration, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import aiormq
import redis.asyncio as redis
from publish_notification import publish
from script_support import BROKER_ERRORS, ScriptError, Target, load_settings, run_script

from push_service.config import Settings
from push_service.parking import Ladder
from push_service.topology import Topology

ROOT = Path(__file__).resolve().parent.parent
PUSH_SERVER_JS = ROOT / "tests/pushserver/node_modules/web-push-testing/src/bin/server.js"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    """A child process whose output goes to `log`."""

    name: str
    proc: asyncio.subprocess.Process
    log: Path

    @classmethod
    async def start(
        cls, name: str, command: list[str], env: dict[str, str] | None, log: Path
    ) -> Process:
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                *command, cwd=ROOT, env=env, stdout=out, stderr=out
            )
        return cls(name, proc, log)

    def check_running(self) -> None:
        if self.proc.returncode is not None:
            output = self.log.read_text(errors="replace")
            raise ScriptError(f"{self.name} exited with {self.proc.returncode}:\n{output}")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(40):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def wait_for(what: str, deadline: float, check: Callable[[], Awaitable[T | None]]) -> T:
    """Poll `check` until it returns a value; ScriptError at the deadline."""
    while True:
        with contextlib.suppress(aiohttp.ClientError):
            if (value := await check()) is not None:
                return value
        if time.monotonic() > deadline:
            raise ScriptError(f"gave up waiting for {what}")
        await asyncio.sleep(0.1)


class Demo:
    def __init__(self, settings: Settings, http: aiohttp.ClientSession, deadline: float) -> None:
        self.settings = settings
        self.http = http
        self.deadline = deadline
        suffix = uuid.uuid4().hex[:8]
        self.queue = f"demo.push.{suffix}"
        self.prefix = f"demo-{suffix}:"
        self.token = secrets.token_urlsafe(24)
        self.push_url = f"http://localhost:{free_port()}"
        self.service_url = ""

    def service_env(self, port: int) -> dict[str, str]:
        """`make run`'s configuration, with a queue, prefix and token of its own."""
        env = dict(os.environ)
        env.update(
            PORT=str(port),
            HOST="127.0.0.1",
            NODE_ENV="development",
            RABBITMQ_QUEUE_NAME=self.queue,
            REDIS_KEY_PREFIX=self.prefix,
            API_TOKENS=self.token,
            PUSH_ALLOW_HTTP="true",
            PUSH_ENDPOINT_ALLOWLIST="localhost,127.0.0.1",
            PYTHONUNBUFFERED="1",
        )
        return env

    async def start_push_server(self, logs: Path) -> Process:
        if not PUSH_SERVER_JS.is_file():
            raise ScriptError(f"{PUSH_SERVER_JS} is missing: run `make demo` (or npm ci)", 2)
        port = self.push_url.rsplit(":", 1)[1]
        command = ["node", str(PUSH_SERVER_JS), port]
        proc = await Process.start("web-push-testing", command, None, logs / "web-push-testing.log")

        async def up() -> bool | None:
            proc.check_running()
            async with self.http.post(f"{self.push_url}/status") as response:
                return True if response.status == 200 else None

        await wait_for("web-push-testing to listen", self.deadline, up)
        return proc

    async def start_service(self, logs: Path) -> Process:
        port = free_port()
        self.service_url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "push_service"]
        env = self.service_env(port)
        proc = await Process.start("push_service", command, env, logs / "push_service.log")

        async def ready() -> bool | None:
            proc.check_running()
            async with self.http.get(f"{self.service_url}/ready") as response:
                return True if response.status == 200 else None

        await wait_for("push_service to be ready (GET /ready)", self.deadline, ready)
        return proc

    async def subscribe(self) -> tuple[dict[str, Any], str, str]:
        """(PushSubscription, web-push-testing's client hash, the VAPID public key)."""
        async with self.http.get(f"{self.service_url}/vapid_public_key") as response:
            public_key = str((await response.json())["public_key"])
        body = {"userVisibleOnly": "true", "applicationServerKey": public_key}
        async with self.http.post(f"{self.push_url}/subscribe", json=body) as response:
            if response.status != 200:
                raise ScriptError(f"web-push-testing refused the subscription: {response.status}")
            data = (await response.json())["data"]
        subscription = {"endpoint": data["endpoint"], "keys": data["keys"]}
        return subscription, str(data["clientHash"]), public_key

    async def publish(self, subscription: dict[str, Any], title: str, body: str) -> str:
        notification_id = f"demo-{uuid.uuid4().hex[:12]}"
        message = {
            "notification_id": notification_id,
            "user_id": "demo-user",
            "devices": [subscription],
            "title": title,
            "body": body,
            "action_url": f"{self.service_url}/web_push_test/web_push_test.html",
            "data": {"sent_by": "scripts/demo.py"},
        }
        target = Target(self.settings.rabbitmq_url, self.queue, 10.0, self.settings)
        await publish(target, json.dumps(message).encode(), notification_id, declare=False)
        return notification_id

    async def outcome(self, notification_id: str) -> dict[str, Any]:
        url = f"{self.service_url}/notifications/{notification_id}"
        headers = {"Authorization": f"Bearer {self.token}"}

        async def final() -> dict[str, Any] | None:
            async with self.http.get(url, headers=headers) as response:
                record = await response.json() if response.status == 200 else None
            return record if record and record.get("status") in ("sent", "failed") else None

        return await wait_for(f"the outcome of {notification_id}", self.deadline, final)

    async def received(self, client_hash: str) -> list[Any]:
        async def messages() -> list[Any] | None:
            body = {"clientHash": client_hash}
            async with self.http.post(f"{self.push_url}/get-notifications", json=body) as resp:
                found = (await resp.json())["data"]["messages"]
            return [json.loads(m) for m in found] or None

        return await wait_for("web-push-testing to receive the push", self.deadline, messages)

    def queues(self) -> list[str]:
        """The main queue, its DLQ and the delay queues the service declares."""
        settings = Settings.from_env(self.service_env(0), env_file=ROOT / ".env")
        topology = Topology(self.queue, settings.rabbitmq_queue_type)
        delays = Ladder(settings.push_retry_ladder_seconds).queues(topology)
        return [self.queue, topology.dead_letter_queue, *delays]

    async def clean_up(self) -> None:
        """Delete the demo's queues and status keys (the service is stopped by now)."""
        with contextlib.suppress(TimeoutError, *BROKER_ERRORS):
            async with asyncio.timeout(10):
                connection = await aiormq.connect(self.settings.rabbitmq_url)
                channel = await connection.channel()
                for name in self.queues():
                    await channel.queue_delete(name)
                await connection.close()
        client = redis.Redis.from_url(self.settings.redis_url)
        with contextlib.suppress(TimeoutError, redis.RedisError, OSError):
            async with asyncio.timeout(10):
                async for key in client.scan_iter(match=f"{self.prefix}*", count=1000):
                    await client.delete(key)
        await client.aclose()


def key_source(settings: Settings) -> str:
    return "VAPID_PRIVATE_KEY" if settings.vapid_private_key else settings.vapid_key_file


async def run_demo(demo: Demo, args: argparse.Namespace) -> int:
    print(f"web-push-testing (a local push service): {demo.push_url}")
    print(f"push_service: {demo.service_url}, queue {demo.queue}, key {key_source(demo.settings)}")
    subscription, client_hash, public_key = await demo.subscribe()
    print(f"subscribed a device with the service's VAPID public key {public_key[:16]}...")
    print(f"  endpoint {subscription['endpoint']}")
    started = time.monotonic()
    notification_id = await demo.publish(subscription, args.title, args.body)
    print(f"published {notification_id} to {demo.queue} (confirmed by RabbitMQ)")
    record = await demo.outcome(notification_id)
    took = time.monotonic() - started
    counts = f"{record['sent']} of {record['devices_total']} devices"
    print(f"push_service says: {record['status']} ({counts}, {took:.2f} s)")
    if record["status"] != "sent":
        print(json.dumps(record, indent=2))
        raise ScriptError("the push was not sent")
    [decrypted] = await demo.received(client_hash)
    print("\nweb-push-testing checked the VAPID signature and decrypted:")
    print(json.dumps(decrypted, indent=2, ensure_ascii=False))
    print(f"\nstatus record (GET /notifications/{notification_id}):")
    print(json.dumps(record, indent=2, ensure_ascii=False))
    return 0


async def main_async(args: argparse.Namespace) -> int:
    settings = load_settings()
    deadline = time.monotonic() + args.timeout
    with tempfile.TemporaryDirectory(prefix="push-demo-") as tmp:
        logs = Path(tmp)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            demo = Demo(settings, http, deadline)
            async with contextlib.AsyncExitStack() as stack:
                stack.push_async_callback(demo.clean_up)
                for starter in (demo.start_push_server, demo.start_service):
                    proc = await starter(logs)
                    stack.push_async_callback(proc.stop)
                try:
                    return await run_demo(demo, args)
                except ScriptError:
                    log = logs / "push_service.log"
                    if log.is_file():
                        sys.stderr.write(
                            f"--- push_service's log\n{log.read_text(errors='replace')}"
                        )
                    raise


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--title", default="Hello from push_service")
    p.add_argument(
        "--body", default="This push went through RabbitMQ, push_service and a local push service."
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole demo")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_script("demo", False, lambda: asyncio.run(main_async(args)))


if __name__ == "__main__":
    raise SystemExit(main())
