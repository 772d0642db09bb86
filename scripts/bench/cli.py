"""End-to-end benchmark of push_service against the baselines, in interleaved rounds.

Everything sends to a local HTTPS push sink (its own process, keep-alive TLS) on
loopback, through the machine's RabbitMQ and Redis (queues and keys of its own):

1. rounds: the service, the bare ceiling and the baselines (the issue's naive
   consumer, Node web-push, pywebpush with and without a Session) each send their
   pushes once per round, the order reversed every other round; with --compare, the
   service of another revision runs in the same rounds;
2. --profile: py-spy on the warm service, summarised by component;
3. the issue's other goals, each on a fresh service process: one message to 10,000
   devices (event-loop stall), memory with 100,000 queued, latency at 500 msg/s, a
   topic of 100,000 subscribers (bench.audience), and the healthy pace beside a push
   service that never answers (bench.outage).

It prints every round as it ends, then medians with their spread, paired ratios, the
other measurements and the goals with pass/miss marks. `make bench BENCH_ARGS=...`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from bench import compare, env, goals, profiling, report, summary
from bench.audience import AudienceRun, measure_audience
from bench.baselines import ClientContender, NaiveContender
from bench.contenders import BareContender, Contender, ServiceContender
from bench.fanout import Fanout, measure_fanout
from bench.latency import Latency, measure_latency
from bench.memory import Memory, measure_memory
from bench.outage import OutageRun, measure_outage
from bench.rounds import Results, run_rounds
from bench.service import ServiceProcess
from bench.sink_control import SinkClient, start_sink

FULL = {"n": 10_000, "rounds": 8, "backlog": 100_000, "latency_seconds": 10.0,
        "profile_seconds": 15, "audience": 100_000, "outage": 9_600}  # fmt: skip
T = TypeVar("T")
STARTED = time.monotonic()


def progress(what: str) -> None:
    print(f"[{time.monotonic() - STARTED:4.0f} s] {what}", flush=True)


EXAMPLES = """examples:
  make bench                                  the full run (5-11 min on the 2-core machine)
  make bench BENCH_ARGS=--quick               a short run (goals at smaller sizes marked n/a)
  make bench BENCH_ARGS='--profile'           plus where the service's CPU goes
  make bench BENCH_ARGS='--compare main --skip-baselines --rounds-only'
                                              this worktree against main: rounds only
  make bench BENCH_ARGS='--audience-only'     only the topic fan-out (100,000 subscribers,
                                              two processes) against device lists
  make bench BENCH_ARGS='--outage-only'       only the healthy pace beside a dark push service
"""
QUICK = {"n": 2_000, "rounds": 3, "backlog": 20_000, "latency_seconds": 3.0,
         "profile_seconds": 5, "audience": 10_000, "outage": 2_400}  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.split("\n\n")[0], epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument(
        "--quick",
        action="store_true",
        help="a short run: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()),
    )
    p.add_argument("-n", type=int, help=f"messages per round (default {FULL['n']:,})")
    p.add_argument("--rounds", type=int, help=f"rounds (default {FULL['rounds']})")
    p.add_argument(
        "--compare",
        metavar="REV|DIR",
        help="also run the service of this git revision or checkout in the rounds",
    )
    p.add_argument(
        "--skip-baselines",
        action="store_true",
        help="rounds of the service(s) and the bare ceiling only",
    )
    p.add_argument(
        "--rounds-only", action="store_true", help="skip the fan-out, memory and latency runs"
    )
    p.add_argument("--profile", action="store_true", help="py-spy profile by component")
    p.add_argument(
        "--profile-seconds",
        type=int,
        help=f"sampling time per service (default {FULL['profile_seconds']})",
    )
    return measurement_options(p)


def measurement_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--devices", type=int, default=1, help="devices per message (1)")
    p.add_argument("--payload", type=int, default=300, help="plaintext bytes per push (300)")
    p.add_argument("--prefetch", type=int, default=256, help="CONSUMER_PREFETCH (256)")
    p.add_argument("--fanout", type=int, default=10_000, help="fan-out devices (10,000; 0 skips)")
    p.add_argument("--backlog", type=int, help=f"memory run backlog ({FULL['backlog']:,}; 0 skips)")
    p.add_argument("--rate", type=float, default=500.0, help="latency run: messages/s (500)")
    p.add_argument(
        "--latency-seconds",
        type=float,
        help=f"latency run length ({FULL['latency_seconds']:g}; 0 skips)",
    )
    p.add_argument(
        "--audience",
        type=int,
        help=f"topic subscribers for the audience run ({FULL['audience']:,}; 0 skips)",
    )
    p.add_argument("--audience-only", action="store_true", help="only the audience run")
    p.add_argument("--audience-chunk", type=int, default=500, help="FANOUT_CHUNK_SIZE (500)")
    p.add_argument("--audience-rounds", type=int, default=1, help="runs of each kind (1)")
    p.add_argument("--audience-processes", type=int, default=2, help="service processes (2)")
    p.add_argument(
        "--audience-prefetch",
        type=int,
        default=16,
        help="CONSUMER_PREFETCH of the audience run, both kinds (16: at 256, 100,000 devices "
        "as lists in flight at once open the circuit to the sink)",
    )
    p.add_argument(
        "--outage", type=int, help=f"healthy pushes of the outage run ({FULL['outage']:,}; 0 skips)"
    )
    p.add_argument("--outage-only", action="store_true", help="only the outage run")
    p.add_argument("--outage-rounds", type=int, default=3, help="paired outage rounds (3)")
    p.add_argument("--log-dir", type=Path, default=env.BENCH_DIR / "logs", help="service logs")
    p.add_argument("--json", type=Path, help="also write every figure to this file")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser()
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.rounds_only:
        args.fanout = args.backlog = args.latency_seconds = args.audience = args.outage = 0
    if args.n < 100 or args.rounds < 1 or args.devices < 1:
        p.error("-n must be at least 100, --rounds and --devices at least 1")
    return args


def make_contenders(args: argparse.Namespace, sink: SinkClient) -> list[Contender]:
    def service(label: str, python: str, title: str) -> ServiceContender:
        process = ServiceProcess(label, python, sink.sink.cafile, args.prefetch, args.log_dir)
        return ServiceContender(
            process, sink, title=title, messages=args.n, devices=args.devices,
            payload=args.payload, warmup=min(args.n, 2000),
        )  # fmt: skip

    contenders: list[Contender] = [
        service("service", sys.executable, "push_service, this worktree: RabbitMQ to acked, "
                "outcomes in Redis"),
    ]  # fmt: skip
    if args.compare:
        other = compare.prepare(args.compare)
        contenders.append(service(other.label, other.python, f"push_service at {other.source}"))
    pushes = args.n * args.devices
    bare = BareContender(sink, pushes=pushes, payload=args.payload, warmup=min(1000, pushes))
    contenders.append(bare)
    if args.skip_baselines:
        return contenders
    if args.devices == 1:  # the naive consumer sends to a message's first device only
        for writes in (2, 0):
            contenders.append(NaiveContender(
                sink, messages=max(500, args.n // 4), payload=args.payload,
                prefetch=args.prefetch, redis_writes=writes,
            ))  # fmt: skip
    for name, share in (("node", 10), ("pywebpush", 20), ("pywebpush-plain", 50)):
        per_round = max(100, args.n // share)
        contenders.append(ClientContender(name, sink, pushes=per_round, payload=args.payload))
    return contenders


async def rounds_phase(
    args: argparse.Namespace, sink: SinkClient
) -> tuple[list[Contender], Results, list[profiling.Profile]]:
    contenders = make_contenders(args, sink)
    profiles = []
    try:
        for contender in contenders:
            progress(f"starting {contender.name}")
            await contender.start()
        progress(f"{args.rounds} rounds (pushes/s and CPU us/push per contender):")
        results = await run_rounds(contenders, args.rounds)
        for c in contenders:
            if args.profile and isinstance(c, ServiceContender):
                rate = summary.rates(results, c.name).median
                profile = await attempt(
                    f"profiling {c.name} for {args.profile_seconds} s",
                    profiling.profile_service(c, args.profile_seconds, rate),
                )
                profiles.extend([profile] if profile else [])
    finally:
        for contender in contenders:
            await contender.stop()
    return contenders, results, profiles


async def attempt(what: str, measurement: Awaitable[T]) -> T | None:
    """One measurement after the rounds; if it fails, say so and keep the others."""
    progress(what)
    try:
        return await measurement
    except Exception as exc:  # any failure of one measurement: the rounds are still worth printing
        print(f"  {what} failed: {exc!r}", flush=True)
        return None


async def other_goals(
    args: argparse.Namespace, sink: SinkClient
) -> tuple[Fanout | None, Memory | None]:
    fanout = memory = None
    if args.fanout:
        fanout = await attempt(
            f"fan-out: one message to {args.fanout:,} devices",
            measure_fanout(sink, args.fanout, args.payload, args.prefetch, args.log_dir),
        )
    if args.backlog:
        memory = await attempt(
            f"memory: {args.backlog:,} messages queued",
            measure_memory(
                sink, args.backlog, args.devices, args.payload, args.prefetch, args.log_dir
            ),
        )
    return fanout, memory


def print_report(
    args: argparse.Namespace,
    contenders: list[Contender],
    results: Results,
    profiles: list[profiling.Profile],
    measured: tuple[Latency | None, Memory | None, Fanout | None],
) -> list[goals.Goal]:
    latency, memory, fanout = measured
    verdicts = goals.evaluate(results, latency, memory, fanout)
    names = [c.name for c in contenders]
    lines = ["", "per round (pushes/s):", *report.per_round_table(results)]
    lines += ["", f"{args.rounds} interleaved rounds:", *report.rounds_table(results, contenders)]
    lines += report.noise(results)
    lines += ["", "paired per round:", *report.paired_lines(results, "service", names[1:])]
    lines += ["", *report.measures(latency, memory, fanout)]
    lines += ["", *report.goals_table(verdicts)]
    for profile in profiles:
        cpu_us = summary.cpu_us(results, profile.label).median
        lines += ["", *profiling.show(profile, cpu_us)]
    print("\n".join(lines), flush=True)
    return verdicts


async def audience_phase(args: argparse.Namespace, sink: SinkClient) -> AudienceRun | None:
    if not args.audience:
        return None
    return await attempt(
        f"audience: a topic of {args.audience:,} subscribers, {args.audience_processes} processes",
        measure_audience(
            sink, args.audience, processes=args.audience_processes, chunk=args.audience_chunk,
            rounds=args.audience_rounds, payload=args.payload, prefetch=args.audience_prefetch,
            log_dir=args.log_dir,
        ),
    )  # fmt: skip


async def outage_phase(args: argparse.Namespace, sink: SinkClient) -> OutageRun | None:
    if not args.outage:
        return None
    return await attempt(
        f"outage: {args.outage:,} healthy pushes alone and beside a dark push service",
        measure_outage(
            sink, args.outage, rounds=args.outage_rounds, prefetch=args.prefetch,
            log_dir=args.log_dir,
        ),
    )  # fmt: skip


async def one_phase(args: argparse.Namespace) -> int:
    """--audience-only or --outage-only: that run alone, against its own sink."""
    phase = audience_phase if args.audience_only else outage_phase
    with start_sink(dark=True) as sink:
        async with SinkClient(sink) as client:
            run = await phase(args, client)
    if run is not None:
        print("\n".join(["", *run.lines()]), flush=True)
        if args.json:
            args.json.write_text(json.dumps(asdict(run), indent=2))
    return 0 if run is not None else 1


async def main_async(args: argparse.Namespace) -> int:
    if args.audience_only or args.outage_only:
        return await one_phase(args)
    if not args.skip_baselines:
        env.ensure_node_env()
    if args.profile or not args.skip_baselines:
        env.ensure_python_env()
    print(f"push_service benchmark on {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f} (service logs in {args.log_dir})", flush=True)  # fmt: skip
    with start_sink(dark=True) as sink:
        async with SinkClient(sink) as client:
            contenders, results, profiles = await rounds_phase(args, client)
            fanout, memory = await other_goals(args, client)
            audience = await audience_phase(args, client)
            outage = await outage_phase(args, client)
    latency = None
    if args.latency_seconds:
        latency = await attempt(
            f"latency: {args.rate:,.0f} msg/s for {args.latency_seconds:g} s",
            measure_latency(args.rate, args.latency_seconds, args.prefetch, args.log_dir),
        )
    verdicts = print_report(args, contenders, results, profiles, (latency, memory, fanout))
    for run in (audience, outage):
        if run is not None:
            print("\n".join(["", *run.lines()]), flush=True)
    print(f"\nfull run: {time.monotonic() - STARTED:.0f} s", flush=True)
    if args.json:
        write_json(args.json, results, verdicts, (latency, memory, fanout))
    return 0


def write_json(path: Path, results: Results, verdicts: list[goals.Goal], measured: Any) -> None:
    data = {
        "rounds": {name: [asdict(r) for r in rounds] for name, rounds in results.items()},
        "goals": [asdict(g) for g in verdicts],
        "measures": [asdict(m) if m is not None else None for m in measured],
    }
    path.write_text(json.dumps(data, indent=1))


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))
