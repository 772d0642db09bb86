"""The library baselines and the issue's naive consumer, as round contenders.

Each starts a client process per round that warms up (where it can), times its pushes
and reports its own CPU time. A round counts only if the client saw `201` for every
push and the sink counted exactly that many accepted pushes and no rejection.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import amqp
from bench.contenders import ROUND_TIMEOUT, Contender, Round
from bench.data import TTL, make_subscriptions, make_vapid, queue_message
from bench.env import NODE_DIR, bench_python, child_env
from bench.sink_control import SinkClient, SinkError

CLIENTS = {
    "node": "Node web-push 3.6.7: 64 in flight, keep-alive Agent",
    "pywebpush": "pywebpush: sequential webpush() sharing a requests.Session",
    "pywebpush-plain": "pywebpush: sequential plain webpush() (a TLS handshake per push)",
}


async def run_child(command: list[str], env: dict[str, str], what: str) -> dict[str, Any]:
    """Run a client to the end; its last stdout line is its JSON result."""
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), ROUND_TIMEOUT)
    lines = stdout.decode().strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        result = {}
    if proc.returncode != 0 or not result:
        raise SinkError(
            f"{what} exited {proc.returncode}: {stdout.decode()[-1000:]} {stderr.decode()[-2000:]}"
        )
    return result


class ClientContender(Contender):
    """pywebpush (in .bench/venv) or Node web-push, one client process per round."""

    def __init__(self, name: str, sink: SinkClient, *, pushes: int, payload: int) -> None:
        self.name, self.title = name, CLIENTS[name]
        self.sink = sink
        self.pushes = pushes
        sequential = name.startswith("pywebpush")
        self.config = {
            "subscriptions": make_subscriptions(sink.sink.base_url),
            "vapid": make_vapid(),
            "n": pushes,
            "warmup": 200 if sequential else 500,
            "concurrency": 1 if sequential else 64,
            "payload_size": payload,
            "ttl": TTL,
            "cafile": sink.sink.cafile,
            "reset_url": f"{sink.sink.base_url}/reset",
            "reuse_session": name == "pywebpush",
        }
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-client-")
        self.config_path = Path(self.tmp.name) / "config.json"

    async def start(self) -> None:
        self.config_path.write_text(json.dumps(self.config))

    def command(self) -> list[str]:
        if self.name == "node":
            return ["node", str(NODE_DIR / "baseline.js"), str(self.config_path)]
        return [str(bench_python()), "-m", "bench.pywebpush_client", str(self.config_path)]

    async def run(self) -> Round:
        result = await run_child(self.command(), child_env(self.sink.sink.cafile), self.name)
        if result.get("status") != {"201": self.pushes}:
            raise SinkError(f"{self.name}: {result.get('status')} {result.get('errors')}")
        await self.sink.expect(self.name, self.pushes)
        return Round(self.name, self.pushes, float(result["elapsed_s"]), float(result["cpu_s"]))

    async def stop(self) -> None:
        self.tmp.cleanup()


class NaiveContender(Contender):
    """The issue's naive consumer (bench.naive_consumer) on a fresh backlog per round."""

    def __init__(
        self, sink: SinkClient, *, messages: int, payload: int, prefetch: int, redis_writes: int
    ) -> None:
        self.name = "naive" if redis_writes else "naive-noredis"
        self.title = (
            "the issue's naive consumer: consume, encrypt, POST, 2 Redis writes, ack"
            if redis_writes
            else "the naive consumer without Redis: consume, encrypt, POST, ack"
        )
        self.sink = sink
        self.pushes, self.payload = messages, payload
        self.prefetch, self.redis_writes = prefetch, redis_writes
        self.queue = amqp.queue_name(self.name)
        self.prefix = amqp.redis_prefix(self.name)
        self.subscriptions = make_subscriptions(sink.sink.base_url)
        self.vapid_key = make_vapid()["private_key"]
        self.published = 0

    async def start(self) -> None:
        async with amqp.channel() as chan:
            await chan.queue_declare(self.queue, durable=True)

    async def prepare(self) -> None:
        subs, first = self.subscriptions, self.published
        bodies = (
            queue_message(f"naive{i}", [subs[i % len(subs)]], self.payload)
            for i in range(first, first + self.pushes)
        )
        async with amqp.channel() as chan:
            self.published += await amqp.publish_many(chan, self.queue, bodies)
        await self.sink.reset()

    async def run(self) -> Round:
        command = [
            sys.executable, "-m", "bench.naive_consumer", "--queue", self.queue,
            "-n", str(self.pushes), "--cafile", self.sink.sink.cafile, "--prefix", self.prefix,
            "--vapid-key", self.vapid_key, "--prefetch", str(self.prefetch),
            "--redis-writes", str(self.redis_writes),
        ]  # fmt: skip
        result = await run_child(command, child_env(self.sink.sink.cafile), self.name)
        await self.sink.expect(self.name, self.pushes)
        return Round(self.name, self.pushes, float(result["elapsed_s"]), float(result["cpu_s"]))

    async def stop(self) -> None:
        await amqp.delete_queues([self.queue])
        await amqp.delete_keys(self.prefix)
