#!/usr/bin/env -S sh -c 'exec "${0%/*}/../.venv/bin/python" "$0" "$@"'
"""End-to-end benchmark of push_service against baselines measured in the same run.

Everything talks to a local HTTPS push sink (scripts/bench_sink.py, its own
process, keep-alive TLS) on loopback:

- baselines (scripts/bench_baselines.py): pywebpush (sequential), Node's web-push
  (64 in flight) and the bare ceiling (http_ece + aiohttp, 64 in flight);
- the issue's naive consumer (scripts/bench_consumer.py), with and without its two
  Redis writes: what one process does with the least work per queue message;
- throughput: N single-device messages already in RabbitMQ, one service process,
  until every outcome is in Redis and every message is acked;
- latency: publish to push-service acceptance at a steady rate (default 500/s);
- memory: peak RSS while draining a large backlog (default 100,000 messages);
- fan-out: one message with 10,000 devices: time, peak RSS, longest loop stall.

Prints one table with the ratios. `make bench` runs it; `--help` lists options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiormq
import orjson
import redis.asyncio as redis
from pamqp import commands as spec

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))

import bench_baselines as baselines  # noqa: E402
import bench_sink  # noqa: E402

from push_service.topology import Topology, declare_topology  # noqa: E402

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class Sub:
    endpoint: str
    keys: dict[str, str]


@dataclass
class Results:
    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, value: str) -> None:
        self.rows.append((name, value))
        print(f"  {name}: {value}", flush=True)

    def table(self) -> str:
        width = max(len(n) for n, _ in self.rows)
        lines = [f"{'measure'.ljust(width)}  value", f"{'-' * width}  {'-' * 30}"]
        lines += [f"{n.ljust(width)}  {v}" for n, v in self.rows]
        return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def message(notification_id: str, subs: list[Sub], payload_size: int) -> bytes:
    body = {
        "notification_id": notification_id,
        "user_id": "bench",
        "devices": [{"endpoint": s.endpoint, "keys": s.keys} for s in subs],
        "title": "Benchmark",
        "body": "",
        "action_url": "https://example.com/bench",
    }
    pad = payload_size - len(orjson.dumps({k: body[k] for k in ("title", "body", "action_url")}))
    body["body"] = "x" * max(0, pad - 40)
    return orjson.dumps(body)


def subscriptions(sink_url: str, count: int) -> list[Sub]:
    return [Sub(s["endpoint"], s["keys"]) for s in baselines.make_subscriptions(sink_url, count)]


class Service:
    """One push_service process against a fresh queue and Redis prefix."""

    def __init__(self, cafile: str, prefetch: int, log_path: Path) -> None:
        self.queue = f"bench-{uuid.uuid4().hex[:8]}"
        self.prefix = f"bench{uuid.uuid4().hex[:8]}:"
        self.port = free_port()
        self.log_path = log_path
        vapid = baselines.make_vapid()
        self.env = {
            **os.environ,
            "PORT": str(self.port), "HOST": "127.0.0.1", "NODE_ENV": "development",
            "RABBITMQ_URL": AMQP_URL, "RABBITMQ_QUEUE_NAME": self.queue,
            "REDIS_URL": REDIS_URL, "REDIS_KEY_PREFIX": self.prefix,
            "VAPID_PRIVATE_KEY": vapid["private_key"], "VAPID_EMAIL": "bench@example.com",
            "PUSH_ENDPOINT_ALLOWLIST": "127.0.0.1", "LOG_LEVEL": "WARNING",
            "CONSUMER_PREFETCH": str(prefetch), "SSL_CERT_FILE": cafile,
            "MAX_MESSAGE_BYTES": str(16 * 1024 * 1024),
        }  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "push_service"], env=self.env, stdout=log, stderr=log
            )

    def metrics(self) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def consumed(self) -> float:
        with contextlib.suppress(OSError):
            return sum(
                v for k, v in self.metrics().items() if k.startswith("push_messages_consumed_total")
            )
        return 0.0

    def peak_rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_consuming(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if self.metrics().get("push_consumer_connected") == 1.0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"service not consuming; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@contextlib.asynccontextmanager
async def broker() -> AsyncIterator[aiormq.abc.AbstractChannel]:
    connection = await aiormq.connect(AMQP_URL)
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


async def publish_many(
    channel: aiormq.abc.AbstractChannel, queue: str, bodies: Iterator[bytes], window: int = 500
) -> int:
    """Publish persistently with confirms, `window` in flight at a time."""
    properties = spec.Basic.Properties(delivery_mode=2, content_type="application/json")
    count, pending = 0, []
    for body in bodies:
        pending.append(channel.basic_publish(body, routing_key=queue, properties=properties))
        count += 1
        if len(pending) >= window:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    return count


async def cleanup(service: Service) -> None:
    async with broker() as channel:
        for queue in (service.queue, f"{service.queue}.dlq"):
            with contextlib.suppress(Exception):
                await channel.queue_delete(queue)
    client = redis.Redis.from_url(REDIS_URL)
    keys = [k async for k in client.scan_iter(match=f"{service.prefix}*", count=10_000)]
    for i in range(0, len(keys), 5000):
        await client.delete(*keys[i : i + 5000])
    await client.aclose()


async def drain(service: Service, total: int, timeout: float) -> float:
    """Seconds from consuming until `total` messages have their outcome recorded."""
    service.start()
    service.wait_consuming()
    return await wait_consumed(service, total, timeout)


async def wait_consumed(service: Service, total: int, timeout: float) -> float:
    """Seconds until the service has finished `total` messages; fails after `timeout`."""
    started = time.perf_counter()
    while service.consumed() < total:
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"only {service.consumed()} of {total} done in {timeout}s")
        await asyncio.sleep(0.02)
    return time.perf_counter() - started


async def with_backlog(
    args: argparse.Namespace, sink: bench_sink.Sink, name: str, count: int
) -> Service:
    """A service (not started yet) whose queue already holds `count` messages of
    `args.devices` devices each."""
    per_message = args.devices
    subs = subscriptions(f"https://127.0.0.1:{sink.port}", max(64, per_message))
    service = Service(sink.cafile, args.prefetch, args.log_dir / f"{name}.log")
    async with broker() as channel:
        await declare_topology(channel.connection, Topology(service.queue))
        bodies = (
            message(
                f"{name}{i}",
                [subs[(i * per_message + j) % len(subs)] for j in range(per_message)],
                args.payload,
            )
            for i in range(count)
        )
        await publish_many(channel, service.queue, bodies)
    return service


async def bench_throughput(args: argparse.Namespace, sink: bench_sink.Sink, out: Results) -> float:
    service = await with_backlog(args, sink, "throughput", args.n)
    bench_sink.sink_reset(sink.port, sink.cafile)
    try:
        elapsed = await drain(service, args.n, timeout=600)
        cpu = service.cpu_seconds()
        stats = bench_sink.sink_stats(sink.port, sink.cafile)
        async with broker() as channel:
            left = (await channel.queue_declare(service.queue, passive=True)).message_count
    finally:
        service.stop()
        await cleanup(service)
    pushes = args.n * args.devices
    rate: float = pushes / elapsed  # pushes/s: what the baselines measure
    shape = f"{args.n:,} msgs" if args.devices == 1 else f"{args.n:,} msgs x {args.devices} devices"
    out.add(
        "service throughput",
        f"{rate:,.0f} {'msg' if args.devices == 1 else 'pushes'}/s ({shape}, prefetch "
        f"{args.prefetch}, {cpu / pushes * 1e6:.0f} us CPU/push incl. start-up)",
    )
    if stats["accepted"] < pushes or left:
        raise RuntimeError(f"sink accepted {stats['accepted']} of {pushes}, queue left {left}")
    return rate


async def bench_latency(args: argparse.Namespace, out: Results) -> None:
    with bench_sink.start_sink(record_times=True) as sink:
        sink_url = f"https://127.0.0.1:{sink.port}"
        subs = subscriptions(sink_url, 64)
        service = Service(sink.cafile, args.prefetch, args.log_dir / "latency.log")
        sent: dict[str, int] = {}
        total = int(args.rate * args.latency_seconds)
        try:
            async with broker() as channel:
                await declare_topology(channel.connection, Topology(service.queue))
                service.start()
                service.wait_consuming()
                await asyncio.sleep(1.0)  # let the first connections open (warm-up)
                bench_sink.sink_reset(sink.port, sink.cafile)
                started = time.monotonic()
                for i in range(total):
                    target = started + i / args.rate
                    delay = target - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)  # pacing the publisher, not a sync
                    notification_id = f"l{i}"
                    keys = subs[i % len(subs)].keys  # own endpoint per message: exact pairing
                    body = message(
                        notification_id,
                        [Sub(f"{sink_url}/push/{notification_id}", keys)],
                        args.payload,
                    )
                    sent[notification_id] = time.monotonic_ns()
                    await channel.basic_publish(
                        body,
                        routing_key=service.queue,
                        properties=spec.Basic.Properties(delivery_mode=2),
                    )
                deadline = time.monotonic() + 30
                while service.consumed() < total and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            stats = bench_sink.sink_stats(sink.port, sink.cafile, times=True)
        finally:
            service.stop()
            await cleanup(service)
    arrivals = {str(name): int(t) for name, t in stats.get("times", [])}
    latencies = [(arrivals[i] - sent[i]) / 1e6 for i in sent if i in arrivals]
    q = statistics.quantiles(latencies, n=100)
    out.add(
        f"latency at {args.rate:.0f} msg/s",
        f"p50 {q[49]:.1f} ms, p95 {q[94]:.1f} ms, p99 {q[98]:.1f} ms "
        f"({len(latencies):,} of {total:,} pushes)",
    )


async def bench_memory(args: argparse.Namespace, sink: bench_sink.Sink, out: Results) -> None:
    service = await with_backlog(args, sink, "memory", args.backlog)
    try:
        elapsed = await drain(service, args.backlog, timeout=1800)
        rss = service.peak_rss_mb()
    finally:
        service.stop()
        await cleanup(service)
    out.add(
        f"peak RSS, {args.backlog:,} queued",
        f"{rss:.0f} MB (drained at {args.backlog / elapsed:,.0f} msg/s)",
    )


async def bench_fanout(args: argparse.Namespace, sink: bench_sink.Sink, out: Results) -> None:
    sink_url = f"https://127.0.0.1:{sink.port}"
    subs = subscriptions(sink_url, args.fanout)
    service = Service(sink.cafile, args.prefetch, args.log_dir / "fanout.log")
    async with broker() as channel:
        await declare_topology(channel.connection, Topology(service.queue))
        service.start()
        service.wait_consuming()
        baseline_rss = service.peak_rss_mb()
        idle_lag = service.metrics().get("push_event_loop_lag_max_seconds", 0.0)
        await publish_many(channel, service.queue, iter([message("fan", subs, args.payload)]))
    try:
        elapsed = await wait_consumed(service, 1, timeout=300)
        metrics = service.metrics()
        lag = metrics.get("push_event_loop_lag_max_seconds", float("nan"))
        ticks = metrics.get("push_event_loop_lag_seconds_count", 0.0)
        over_10ms = ticks - metrics.get('push_event_loop_lag_seconds_bucket{le="0.01"}', 0.0)
        rss = service.peak_rss_mb()
    finally:
        service.stop()
        await cleanup(service)
    out.add(
        f"fan-out, {args.fanout:,} devices",
        f"{elapsed:.2f} s ({args.fanout / elapsed:,.0f} pushes/s), peak RSS {rss:.0f} MB "
        f"(idle {baseline_rss:.0f} MB), longest loop stall {lag * 1000:.0f} ms "
        f"(before the message: {idle_lag * 1000:.0f} ms; {over_10ms:.0f} of {ticks:.0f} "
        f"20-ms ticks late by over 10 ms)",
    )


async def bench_naive(
    args: argparse.Namespace, sink: bench_sink.Sink, out: Results, redis_writes: int
) -> float:
    """The issue's naive consumer (scripts/bench_consumer.py) on the same kind of backlog."""
    name = f"naive{redis_writes}"
    service = await with_backlog(args, sink, name, args.n)
    bench_sink.sink_reset(sink.port, sink.cafile)
    command = [
        sys.executable, str(SCRIPTS / "bench_consumer.py"), "--queue", service.queue,
        "-n", str(args.n), "--cafile", sink.cafile, "--prefix", service.prefix,
        "--vapid-key", service.env["VAPID_PRIVATE_KEY"], "--prefetch", str(args.prefetch),
        "--redis-writes", str(redis_writes),
    ]  # fmt: skip
    try:
        proc = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
        stdout, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"naive consumer exited {proc.returncode}: {stdout[-500:]!r}")
        result = orjson.loads(stdout.strip().splitlines()[-1])
        stats = bench_sink.sink_stats(sink.port, sink.cafile)
    finally:
        await cleanup(service)
    if stats["accepted"] < args.n:
        raise RuntimeError(f"naive consumer: sink accepted {stats['accepted']} of {args.n}")
    rate = float(result["rate"])
    steps = " -> 2 Redis writes" if redis_writes == 2 else ""
    out.add(
        f"naive consumer{'' if redis_writes else ', no Redis'}",
        f"{rate:,.0f} msg/s (consume -> encrypt -> POST{steps} -> ack, "
        f"{result['cpu_s'] / args.n * 1e6:.0f} us CPU/msg)",
    )
    return rate


def run_baselines(
    args: argparse.Namespace, sink: bench_sink.Sink, out: Results
) -> dict[str, float]:
    baselines.ensure_bench_env(quiet=True)
    url = f"https://127.0.0.1:{sink.port}"
    rates: dict[str, float] = {}
    runs = (
        ("pywebpush-nosession", min(args.n, 1000)),  # the "sequential webpush() calls"
        ("pywebpush", min(args.n, 2000)),  # the same with a shared requests.Session
        ("node", args.n),
        ("bare", args.n),
    )
    for name, n in runs:
        result = baselines.measure_baseline(name, n, url, sink.cafile)
        rates[name] = float(result["rate"])
        out.add(f"baseline {name}", f"{rates[name]:,.0f} msg/s ({baselines.TITLES[name]})")
    return rates


async def main_async(args: argparse.Namespace) -> int:
    out = Results()
    args.log_dir.mkdir(parents=True, exist_ok=True)
    print(f"push_service benchmark (logs in {args.log_dir})", flush=True)
    with bench_sink.start_sink() as sink:
        rates = run_baselines(args, sink, out) if not args.skip_baselines else {}
        if not args.skip_baselines and args.devices == 1:  # the naive consumer sends to one
            rates["naive"] = await bench_naive(args, sink, out, redis_writes=2)
            rates["naive-noredis"] = await bench_naive(args, sink, out, redis_writes=0)
        service_rate = await bench_throughput(args, sink, out)
        for name, label in (
            ("bare", "vs bare ceiling"),
            ("naive", "vs naive consumer"),
            ("naive-noredis", "vs naive consumer, no Redis"),
            ("node", "vs node web-push"),
            ("pywebpush-nosession", "vs pywebpush (plain webpush())"),
            ("pywebpush", "vs pywebpush (with a Session)"),
        ):
            if name in rates:
                out.add(f"ratio {label}", f"{service_rate / rates[name]:.2f}x")
        if args.fanout:
            await bench_fanout(args, sink, out)
        if args.backlog:
            await bench_memory(args, sink, out)
    if args.latency_seconds:
        await bench_latency(args, out)
    print("\n" + out.table())
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10_000, help="messages for throughput runs")
    parser.add_argument(
        "--devices",
        type=int,
        default=1,
        help="devices per message in the throughput and memory runs",
    )
    parser.add_argument("--payload", type=int, default=300, help="plaintext bytes per push")
    parser.add_argument("--prefetch", type=int, default=256, help="CONSUMER_PREFETCH")
    parser.add_argument(
        "--fanout", type=int, default=10_000, help="devices in the fan-out message (0 skips)"
    )
    parser.add_argument(
        "--backlog", type=int, default=100_000, help="queued messages for the memory run (0 skips)"
    )
    parser.add_argument("--rate", type=float, default=500.0, help="latency run: msgs/s")
    parser.add_argument(
        "--latency-seconds", type=float, default=10.0, help="latency run length (0 skips)"
    )
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--log-dir", type=Path, default=Path(".bench/logs"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
