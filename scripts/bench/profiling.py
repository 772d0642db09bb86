"""`--profile`: where a service's CPU goes at steady state, sampled with py-spy.

After the rounds, the (warm) service process gets a backlog large enough for the
profile plus a margin at each end; py-spy (from .bench/venv, never the service's
dependencies) attaches to it half a second after it is thawed, samples native and
Python frames for `seconds`, and detaches before the backlog runs out. The raw stacks
are kept in .bench/profile/ (speedscope reads them; so does flamegraph.pl).

Sampling pauses the process briefly a hundred times a second, so the profiled round
is slower than the measured ones; the shares are what it is for.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from bench.components import ORDER, Breakdown, breakdown, parse_frame
from bench.contenders import ServiceContender
from bench.env import BENCH_DIR, ensure_python_env, py_spy

PROFILE_DIR = BENCH_DIR / "profile"
SAMPLE_RATE = 100
LEAD_IN = 0.5  # seconds after SIGCONT before sampling: the backlog's first burst


class ProfileError(RuntimeError):
    """py-spy could not sample the service."""


@dataclass(frozen=True)
class Profile:
    label: str
    seconds: int
    breakdown: Breakdown
    raw_path: Path


async def record(pid: int, seconds: int, out: Path) -> None:
    command = [
        str(py_spy()), "record", "--pid", str(pid), "--duration", str(seconds),
        "--rate", str(SAMPLE_RATE), "--native", "--format", "raw", "--output", str(out),
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await proc.communicate()
    if proc.returncode != 0:
        raise ProfileError(f"py-spy exited {proc.returncode}: {output.decode()[-2000:]}")


async def profile_service(contender: ServiceContender, seconds: int, rate: float) -> Profile:
    """Sample `contender` for `seconds` while it drains a backlog; `rate` (messages/s,
    from the rounds) sizes the backlog so that it outlasts the sampling."""
    ensure_python_env()
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    out = PROFILE_DIR / f"{contender.name}.txt"
    messages = max(contender.messages, int(rate * (seconds + LEAD_IN) * 1.5) + 1000)
    await contender.prepare(messages)
    round_task = asyncio.create_task(contender.run(messages))
    try:
        await asyncio.sleep(LEAD_IN)  # a fixed lead-in after thawing, not a synchronisation
        await record(contender.service.pid, seconds, out)
    finally:
        await round_task
    return load(contender.name, seconds, out)


def load(label: str, seconds: int, raw_path: Path) -> Profile:
    return Profile(label, seconds, breakdown(raw_path.read_text()), raw_path)


def _short(frame: str) -> str:
    """`Delivery.push (push_service/delivery.py)` -> `Delivery.push (delivery.py)`."""
    name, path = parse_frame(frame)
    parts = path.removesuffix("/__init__.py").rsplit("/", 1)
    return f"{name} ({parts[-1]})" if path else name


def show(profile: Profile, cpu_us_per_push: float, top: int = 3) -> list[str]:
    """The breakdown as lines: share, µs of CPU per push (share x the rounds' median CPU
    per push) and the innermost Python frames that weigh most in each component."""
    b = profile.breakdown
    lines = [
        f"profile of {profile.label}: {b.samples:,} samples over {profile.seconds} s "
        f"(py-spy --native, {SAMPLE_RATE} Hz; raw stacks in {profile.raw_path})",
        f"  {'component':<44} {'share':>6} {'us/push':>8}  heaviest frames",
    ]
    for name in ORDER:
        share = b.share(name)
        if not share:
            continue
        leaves = ", ".join(
            f"{_short(frame)} {count / b.samples:.0%}"
            for frame, count in b.leaves[name].most_common(top)
        )
        lines.append(f"  {name:<44} {share:>6.1%} {share * cpu_us_per_push:>8.0f}  {leaves}")
    return lines
