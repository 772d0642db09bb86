"""What runs in the rounds: a contender sends a number of pushes per round, timed.

A contender is started once (and warmed up), then for every round `prepare()` sets up
what must not be timed and `run()` is the timed part. The service and the bare
ceiling stay up across rounds (one process each, steady state); the library
baselines (bench.baselines) start a client per round.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench import amqp, procfs
from bench.data import make_subscriptions, queue_message
from bench.env import child_env
from bench.service import ServiceError, ServiceProcess
from bench.sink_control import SinkClient, SinkError

ROUND_TIMEOUT = 600.0


@dataclass
class Round:
    contender: str
    pushes: int
    elapsed: float
    cpu: float  # CPU seconds of the contender's process over the round
    others: float = 0.0  # cores used by the rest of the machine meanwhile (noise)

    @property
    def rate(self) -> float:
        return self.pushes / self.elapsed

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.pushes * 1e6


class Contender:
    name: str  # short, in the tables
    title: str  # what it is, in the legend
    pushes: int  # per round

    async def start(self) -> None:
        """Processes up and warmed up."""

    async def prepare(self) -> None:
        """The untimed set-up of the next round."""

    async def run(self) -> Round:
        """The timed round."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Processes down; what the contender created on the shared servers removed."""


class ServiceContender(Contender):
    """push_service draining a fresh backlog per round, in one process for all rounds.

    The backlog is published while the service is frozen (SIGSTOP); the round is
    timed from SIGCONT until the sink has accepted the round's last push, and its
    CPU is the process's CPU from SIGCONT until the last outcome is recorded.
    """

    def __init__(
        self, service: ServiceProcess, sink: SinkClient, *, title: str, messages: int,
        devices: int, payload: int, warmup: int,
    ) -> None:  # fmt: skip
        self.service = service
        self.sink = sink
        self.name, self.title = service.label, title
        self.messages, self.devices, self.payload = messages, devices, payload
        self.pushes = messages * devices
        self.warmup = warmup
        self.subscriptions = make_subscriptions(sink.sink.base_url, max(64, devices))
        self.published = 0
        self.consumed_before = 0.0

    async def start(self) -> None:
        await self.service.start()
        await self.prepare(self.warmup)
        await self.run(self.warmup)

    async def prepare(self, messages: int | None = None) -> None:
        count = messages or self.messages
        self.consumed_before = await self.service.consumed()
        await self.service.freeze()
        subs, per = self.subscriptions, self.devices
        bodies = (
            queue_message(
                f"{self.service.slug}-{self.published + i}",
                [subs[((self.published + i) * per + j) % len(subs)] for j in range(per)],
                self.payload,
            )
            for i in range(count)
        )
        async with amqp.channel() as chan:
            self.published += await amqp.publish_many(chan, self.service.queue, bodies)
        await self.sink.reset()

    async def run(self, messages: int | None = None) -> Round:
        count = messages or self.messages
        cpu, started = self.service.cpu_seconds(), time.monotonic_ns()
        self.service.thaw()
        stats = await self._last_push(count * self.devices, self.consumed_before + count)
        await self.service.wait_consumed(self.consumed_before + count, ROUND_TIMEOUT)
        cpu = self.service.cpu_seconds() - cpu
        await self.sink.expect(self.name, count * self.devices)
        elapsed = (stats["last_ns"] - started) / 1e9
        return Round(self.name, count * self.devices, elapsed, cpu)

    async def _last_push(self, pushes: int, consumed: float) -> dict[str, Any]:
        """The sink's stats once the round's last push arrived. Once a second it looks
        at the service too, to fail at once if the service dies, or finishes its
        messages without pushing them all (dead-lettered: see its log)."""
        waiting = asyncio.create_task(self.sink.wait(pushes, ROUND_TIMEOUT))
        finished_at = None
        try:
            while not (await asyncio.wait({waiting}, timeout=1.0))[0]:
                self.service.check_alive()
                if finished_at is None and await self.service.consumed() >= consumed:
                    finished_at = time.monotonic()
                if finished_at is not None and time.monotonic() - finished_at > 5:
                    raise ServiceError(
                        f"{self.name} finished its messages, but not all their pushes "
                        f"reached the sink; see {self.service.log_path}"
                    )
            return waiting.result()
        finally:
            waiting.cancel()

    async def stop(self) -> None:
        await self.service.stop()
        await self.service.cleanup()


class BareContender(Contender):
    """The bare ceiling (bench.bare) as a long-lived child: one command per round."""

    name = "bare"
    title = "bare ceiling: http_ece + aiohttp, cached VAPID, 64 in flight"

    def __init__(self, sink: SinkClient, *, pushes: int, payload: int, warmup: int) -> None:
        self.sink = sink
        self.pushes, self.payload, self.warmup = pushes, payload, warmup
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.bare", "--sink-url", self.sink.sink.base_url,
            "--cafile", self.sink.sink.cafile, "--payload", str(self.payload),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=child_env(self.sink.sink.cafile),
        )  # fmt: skip
        await self.sink.reset()
        await self._command(self.warmup)

    async def _command(self, count: int) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(b"%d\n" % count)
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), ROUND_TIMEOUT)
        if not line:
            raise SinkError(f"the bare loop exited ({await self.proc.wait()})")
        result: dict[str, Any] = json.loads(line)
        if result["status"] != {"201": count}:
            raise SinkError(f"bare loop: {result['status']} {result['errors']}")
        return result

    async def prepare(self) -> None:
        await self.sink.reset()

    async def run(self) -> Round:
        assert self.proc is not None
        cpu = procfs.cpu_seconds(self.proc.pid)
        result = await self._command(self.pushes)
        cpu = procfs.cpu_seconds(self.proc.pid) - cpu
        await self.sink.expect(self.name, self.pushes)
        return Round(self.name, self.pushes, float(result["elapsed_s"]), cpu)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            await self.proc.wait()
