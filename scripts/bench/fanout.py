"""A large fan-out: one message to `devices` devices on a fresh service process, and
the longest event-loop stall the service's own monitor saw meanwhile (a 20 ms timer;
`push_event_loop_lag_max_seconds`). A stall delays heartbeats and every other push."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import amqp
from bench.data import make_subscriptions, queue_message
from bench.procfs import LoadMeter
from bench.service import ServiceProcess
from bench.sink_control import SinkClient

LAG_MAX = "push_event_loop_lag_max_seconds"
LAG_COUNT = "push_event_loop_lag_seconds_count"
LAG_UNDER_10MS = 'push_event_loop_lag_seconds_bucket{le="0.01"}'


@dataclass(frozen=True)
class Fanout:
    devices: int
    seconds: float
    peak_rss_mb: float
    idle_rss_mb: float
    stall_ms: float  # the longest stall while the message was delivered
    idle_stall_ms: float  # ... and before it (start-up)
    late_ticks: int  # 20-ms ticks late by more than 10 ms
    ticks: int
    others: float  # cores other processes used meanwhile: a stall may be theirs


async def measure_fanout(
    sink: SinkClient, devices: int, payload: int, prefetch: int, log_dir: Path
) -> Fanout:
    subs = make_subscriptions(sink.sink.base_url, devices)
    body = queue_message("fanout", subs, payload)
    service = ServiceProcess("fanout", sys.executable, sink.sink.cafile, prefetch, log_dir)
    try:
        await service.start()
        idle_rss = service.peak_rss_mb()
        idle_lag = (await service.metrics()).get(LAG_MAX, 0.0)
        await sink.reset()
        meter, started = LoadMeter.start(), time.monotonic()
        async with amqp.channel() as chan:
            await amqp.publish_many(chan, service.queue, [body])
        await sink.wait(devices, 600)
        await service.wait_consumed(1, 60)
        elapsed, others = time.monotonic() - started, meter.others()
        metrics = await service.metrics()
        rss = service.peak_rss_mb()
    finally:
        await service.stop()
        await service.cleanup()
    ticks = int(metrics.get(LAG_COUNT, 0))
    late = ticks - int(metrics.get(LAG_UNDER_10MS, 0))
    stall = metrics.get(LAG_MAX, float("nan"))
    return Fanout(
        devices, elapsed, rss, idle_rss, stall * 1000, idle_lag * 1000, late, ticks, others
    )
