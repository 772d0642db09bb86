"""Scheduled sends: precision and memory (issue 24).

    PYTHONPATH=scripts .venv/bin/python -m bench.schedule [--due 1000] [--held 100000]

precision  `--due` notifications published with the same `send_at` (a few seconds
           ahead) to a real service process; a local push sink notes when each push
           arrives; prints p50/p99/max lateness after send_at.
memory     `--held` notifications scheduled a day ahead: once all wait in the delay
           queues, prints the service's RSS (now and peak) and the queues' memory as
           RabbitMQ reports it (`rabbitmqctl list_queues`), then deletes them.
Queues are `bench-<run>-...`, Redis keys `bench:<run>:...`, deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import redis.asyncio as redis
from aiohttp import web

from bench import amqp
from bench.data import make_vapid
from bench.env import child_env
from bench.service import free_port
from push_service.parking import Ladder
from push_service.schedule import SCHEDULE_STEPS


def _keys() -> dict[str, str]:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return {"p256dh": b64(point), "auth": b64(os.urandom(16))}


KEYS = _keys()


class Sink:
    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.arrived.setdefault(request.match_info["name"], time.time())
        return web.Response(status=201)


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def queue_memory(prefix: str) -> tuple[int, float]:
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name", "messages", "memory"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    messages, memory = 0, 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(prefix) and parts[1].isdigit():
            messages += int(parts[1])
            memory += int(parts[2])
    return messages, memory / 1024 / 1024


async def publish(queue: str, bodies: list[bytes]) -> None:
    async with amqp.channel() as chan:
        for start in range(0, len(bodies), 500):
            await asyncio.gather(
                *(chan.basic_publish(b, routing_key=queue, properties=amqp.PERSISTENT)
                  for b in bodies[start:start + 500])
            )  # fmt: skip


def body(nid: str, endpoint: str, send_at: float) -> bytes:
    device = {"endpoint": endpoint, "keys": KEYS}
    return orjson.dumps(
        {"notification_id": nid, "devices": [device], "title": "t", "send_at": send_at}
    )


async def run(due: int, held: int) -> None:
    sink = Sink()
    app = web.Application()
    app.router.add_post("/push/{name}", sink.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sink_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", sink_port).start()
    queue, prefix = amqp.queue_name("schedule"), amqp.redis_prefix("schedule")
    port = free_port()
    env = child_env(
        PORT=str(port), HOST="127.0.0.1", NODE_ENV="development", LOG_LEVEL="WARNING",
        RABBITMQ_URL=amqp.AMQP_URL, RABBITMQ_QUEUE_NAME=queue, REDIS_URL=amqp.REDIS_URL,
        REDIS_KEY_PREFIX=prefix, VAPID_PRIVATE_KEY=make_vapid()["private_key"],
        VAPID_EMAIL="bench@example.com", PUSH_ENDPOINT_ALLOWLIST="127.0.0.1",
        PUSH_ALLOW_HTTP="true",
    )  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "push_service"], env=env, cwd="/tmp")  # noqa: ASYNC220 - a bench driver
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/ready") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        endpoint = f"http://127.0.0.1:{sink_port}/push/"
        if due:
            send_at = time.time() + 8
            await publish(queue, [body(f"p{i}", f"{endpoint}p{i}", send_at) for i in range(due)])
            deadline = time.time() + 60
            while len(sink.arrived) < due and time.time() < deadline:
                await asyncio.sleep(0.1)
            late = sorted(t - send_at for t in sink.arrived.values())
            print(f"precision: {len(late)}/{due} pushed; lateness after send_at: "
                  f"p50 {statistics.median(late):.3f}s p99 {late[int(len(late) * 0.99) - 1]:.3f}s "
                  f"max {late[-1]:.3f}s min {late[0]:.3f}s")  # fmt: skip
        if held:
            before = rss_mb(proc.pid)
            send_at = time.time() + 86400
            started = time.time()
            for start in range(0, held, 10_000):
                batch = range(start, min(held, start + 10_000))
                await publish(queue, [body(f"h{i}", f"{endpoint}h{i}", send_at) for i in batch])
            while True:
                waiting, memory = queue_memory(queue + ".delay.")
                main, _ = queue_memory(queue)
                if waiting >= held and main - waiting == 0:
                    break
                await asyncio.sleep(2)
            now, peak = rss_mb(proc.pid)
            print(f"memory: {held} scheduled in {time.time() - started:.0f}s; service RSS "
                  f"{now:.0f} MB (peak {peak:.0f} MB, {before[0]:.0f} MB before); delay queues "
                  f"hold {waiting} messages in {memory:.0f} MB of RabbitMQ memory")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(30)
        await runner.cleanup()
        await cleanup(queue, prefix)


async def cleanup(queue: str, prefix: str) -> None:
    names = [queue, f"{queue}.dlq", *(Ladder.queue(queue, s) for s in SCHEDULE_STEPS)]
    names += [Ladder.queue(queue, s) for s in (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)]
    out = subprocess.run(  # noqa: ASYNC221 - a bench driver
        ["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True,
                         text=True, check=False).stdout  # fmt: skip
    names += [n for n in out.split() if n.startswith(queue)]
    async with amqp.channel() as chan:
        for name in set(names):
            try:
                await chan.queue_delete(name)
            except Exception:
                continue
    client = redis.from_url(amqp.REDIS_URL)
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        await client.delete(key)
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--held", type=int, default=100_000)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(run(args.due, args.held))


if __name__ == "__main__":
    main()
