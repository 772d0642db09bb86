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
import shlex
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import aiormq
import redis.asyncio as redis
from child_processes import Process, free_port
from publish_notification import publish
from script_support import (
    BROKER_ERRORS,
    EXIT_INTERRUPTED,
    ScriptError,
    Target,
    load_settings,
    run_script,
    stop_on_signals,
)

from push_service.config import Settings
from push_service.parking import Ladder, service_topology

ROOT = Path(__file__).resolve().parent.parent
PUSH_SERVER_JS = ROOT / "tests/pushserver/node_modules/web-push-testing/src/bin/server.js"
T = TypeVar("T")


async def wait_for(what: str, deadline: float, check: Callable[[], Awaitable[T | None]]) -> T:
    """Poll `check` until it returns a value; ScriptError at the deadline."""
    while True:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):  # not up (yet)
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
        self.succeeded = False  # a push arrived (with --keep-running: then Ctrl-C is the end)

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

    async def start_push_server(self, logs: Path, stack: contextlib.AsyncExitStack) -> None:
        if not PUSH_SERVER_JS.is_file():
            raise ScriptError(f"{PUSH_SERVER_JS} is missing: run `make demo` (or npm ci)", 2)
        port = self.push_url.rsplit(":", 1)[1]
        command = ["node", str(PUSH_SERVER_JS), port]
        proc = await Process.start(
            "web-push-testing", command, ROOT, None, logs / "web-push-testing.log"
        )
        stack.push_async_callback(proc.stop)

        async def up() -> bool | None:
            proc.check_running()
            async with self.http.post(f"{self.push_url}/status") as response:
                return True if response.status == 200 else None

        await wait_for("web-push-testing to listen", self.deadline, up)

    async def start_service(self, logs: Path, stack: contextlib.AsyncExitStack) -> None:
        port = free_port()
        self.service_url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "push_service"]
        env = self.service_env(port)
        proc = await Process.start("push_service", command, ROOT, env, logs / "push_service.log")
        stack.push_async_callback(proc.stop)

        async def ready() -> bool | None:
            proc.check_running()
            async with self.http.get(f"{self.service_url}/ready") as response:
                return True if response.status == 200 else None

        await wait_for("push_service to be ready (GET /ready)", self.deadline, ready)

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
        ladder = Ladder(settings.push_retry_ladder_seconds)
        return service_topology(self.queue, settings.rabbitmq_queue_type, ladder).queues

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
    if args.keep_running:
        demo.succeeded = True
        print_try_more(demo, subscription, client_hash, notification_id)
        await asyncio.Event().wait()  # until Ctrl-C
    return 0


def print_try_more(
    demo: Demo, subscription: dict[str, Any], client_hash: str, notification_id: str
) -> None:
    device = shlex.quote(json.dumps(subscription))
    received = shlex.quote(json.dumps({"clientHash": client_hash}))
    print(
        "\nStill running; Ctrl-C stops both servers and cleans up. Try:\n"
        f"  curl -H 'Authorization: Bearer {demo.token}' "
        f"{demo.service_url}/notifications/{notification_id}\n"
        f"  RABBITMQ_QUEUE_NAME={demo.queue} scripts/publish_notification.py "
        f"--allow-any-endpoint --title Again --subscription-json {device}\n"
        f"  curl -X POST -H 'Content-Type: application/json' -d {received} "
        f"{demo.push_url}/get-notifications",
        flush=True,
    )


async def start_and_run(
    demo: Demo, args: argparse.Namespace, logs: Path, stack: contextlib.AsyncExitStack
) -> int:
    await demo.start_push_server(logs, stack)
    await demo.start_service(logs, stack)
    try:
        return await run_demo(demo, args)
    except ScriptError:
        log = logs / "push_service.log"
        if log.is_file():
            sys.stderr.write(f"--- push_service's log\n{log.read_text(errors='replace')}")
        raise


async def main_async(args: argparse.Namespace) -> int:
    settings = load_settings(ROOT / ".env")  # what the service reads: it runs in ROOT
    deadline = time.monotonic() + args.timeout
    with tempfile.TemporaryDirectory(prefix="push-demo-") as tmp:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            demo = Demo(settings, http, deadline)
            # Ctrl-C stops the demo, not the clean-up after it (a second Ctrl-C does).
            with stop_on_signals() as stop:
                async with contextlib.AsyncExitStack() as stack:
                    stack.push_async_callback(demo.clean_up)
                    body = asyncio.create_task(start_and_run(demo, args, Path(tmp), stack))
                    stopped = asyncio.create_task(stop.wait())
                    await asyncio.wait({body, stopped}, return_when=asyncio.FIRST_COMPLETED)
                    stopped.cancel()
                    if body.done():
                        return body.result()
                    body.cancel()
                    await asyncio.wait({body})
                    if demo.succeeded:
                        print("stopping", file=sys.stderr)
                        return 0
                    print("interrupted; stopping what the demo started", file=sys.stderr)
                    return EXIT_INTERRUPTED


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--title", default="Hello from push_service")
    p.add_argument(
        "--body", default="This push went through RabbitMQ, push_service and a local push service."
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole demo")
    p.add_argument(
        "--keep-running",
        action="store_true",
        help="after the push, keep both servers running until Ctrl-C (prints what to try)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_script("demo", False, lambda: asyncio.run(main_async(args)))


if __name__ == "__main__":
    raise SystemExit(main())
