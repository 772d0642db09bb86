"""Smoke tests of the benchmark (scripts/bench/): its parts, and one tiny real run.

Nothing here times anything: a benchmark is not a timed test. The figures a run
prints are checked for presence and consistency, never for speed.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from bench import compare, components, goals, procfs, summary
from bench.audience import AudienceRun
from bench.contenders import Round
from bench.data import make_vapid, push_headers
from bench.env import BenchEnvError, child_env
from bench.fanout import Fanout
from bench.latency import Latency
from bench.memory import Memory
from bench.sink_control import SinkClient, SinkError, start_sink

from tests.support import ROOT


def rounds(name: str, *rates: float, cpu_us: float = 100.0) -> list[Round]:
    """Rounds of 1,000 pushes at these rates."""
    return [Round(name, 1000, 1000 / rate, cpu_us * 1000 / 1e6) for rate in rates]


# --- summary -----------------------------------------------------------------------------


def test_spread_gives_median_quartiles_and_range() -> None:
    spread = summary.Spread.of([10.0, 40.0, 20.0, 30.0, 50.0])
    assert (spread.median, spread.q1, spread.q3) == (30.0, 20.0, 40.0)
    assert (spread.low, spread.high, spread.count) == (10.0, 50.0, 5)
    assert spread.relative_iqr() == pytest.approx(10 / 30)
    assert "IQR 20-40" in spread.show()


def test_paired_ratio_is_taken_round_by_round() -> None:
    # The machine halves its speed in round 2: both contenders slow down alike, so the
    # per-round ratio stays 0.5 while the ratio of medians would not be exact.
    results = {"service": rounds("service", 100, 50, 100), "bare": rounds("bare", 200, 100, 200)}
    ratio = summary.paired(results, "service", "bare")
    assert ratio is not None
    assert (ratio.low, ratio.median, ratio.high) == (0.5, 0.5, 0.5)
    assert summary.paired(results, "service", "node") is None
    assert summary.change(summary.Spread.of([1.1, 1.2, 1.3])).startswith("+20.0%")


# --- goals -------------------------------------------------------------------------------


def test_goals_mark_pass_miss_and_not_measured() -> None:
    results = {
        "service": rounds("service", 600, 600),
        "bare": rounds("bare", 1000, 1000),  # 0.60x: pass
        "node": rounds("node", 400, 400),  # 1.5x: miss
    }
    latency = Latency(500.0, 10, 5000, 5000, 1.0, 2.0, 3.0, 4.0, 0.1)
    memory = Memory(20_000, 1, 70.0, 2000.0, 0.1)  # a quick run's backlog
    fanout = Fanout(10_000, 6.0, 100.0, 60.0, 60.0, 5.0, 3, 300, 0.1)  # a 60 ms stall
    marks = [g.verdict for g in goals.evaluate(results, latency, memory, fanout)]
    assert marks == [
        "pass",
        "MISS",
        "n/a: not measured in this run",
        "pass",
        "n/a: a smaller backlog",
        "MISS",
    ]


@pytest.mark.parametrize(
    ("topic_seconds", "peak_mb", "verdict"),
    [(22.0, 90.0, "met"), (23.0, 90.0, "NOT met"), (22.0, 120.0, "NOT met")],
)
def test_the_audience_goal_needs_the_pace_and_the_memory(
    topic_seconds: float, peak_mb: float, verdict: str
) -> None:
    """Device lists in 20 s: a topic in 22 s is 0.91x, in 23 s 0.87x; RSS from 65 MB."""
    run = AudienceRun(100_000, 2, 500, 16, topic_seconds=[topic_seconds], list_seconds=[20.0])
    run.idle_rss_mb, run.topic_peak_rss_mb, run.list_peak_rss_mb = [65.0], [peak_mb], [peak_mb]
    assert run.lines()[-1].endswith(f": {verdict}")


# --- profile components ------------------------------------------------------------------

ROOT_FRAMES = [
    "_run_module_as_main (<frozen runpy>:198)",
    "main (push_service/main.py:99)",
    "run_forever (loop.c:33192)",
    "task_step (_asynciomodule.c:2990)",
]


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        (
            ["Delivery.push (push_service/delivery.py:156)", "encrypt (push_service/webpush.py:48)",
             "derive_key (http_ece/__init__.py:107)", "ecp_nistz256 (cryptography/_rust.abi3.so)"],
            components.ENCRYPTION,
        ),
        (
            ["StreamWriter._writelines (aiohttp/http_writer.py:116)",
             "SSLProtocol__write_appdata (loop.c:158280)", "write (libc.so.6)"],
            components.POST,
        ),
        (
            ["Connection.__writer (aiormq/connection.py:834)",
             "StreamWriter.write (asyncio/streams.py:343)", "write (libc.so.6)"],
            components.AMQP,
        ),
        (["Consumer._settle (push_service/consumer.py:130)", "create_task (asyncio/tasks.py:374)"],
         components.GLUE),
        (["Consumer._delivery_count (push_service/consumer.py:209)",
          "gc_collect_main (libpython3.11.so.1.0)"], components.GC),
        ([], components.LOOP),  # nothing but the loop and the entry point
    ],
)  # fmt: skip
def test_a_sample_goes_to_the_innermost_component(frames: list[str], expected: str) -> None:
    assert components.component(ROOT_FRAMES + frames) == expected


def test_breakdown_reads_py_spy_raw_output() -> None:
    raw = "\n".join([
        ";".join([*ROOT_FRAMES, "derive_key (http_ece/__init__.py:107)"]) + " 3",
        ";".join([*ROOT_FRAMES, "Redis.execute (redis/asyncio/client.py:600)"]) + " 1",
    ])  # fmt: skip
    result = components.breakdown(raw)
    assert result.samples == 4
    assert result.share(components.ENCRYPTION) == 0.75
    assert result.share(components.REDIS) == 0.25


# --- /proc -------------------------------------------------------------------------------


def test_procfs_sees_a_child_stop_and_its_cpu() -> None:
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 30
        while procfs.cpu_seconds(child.pid) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert procfs.cpu_seconds(child.pid) > 0
        os.kill(child.pid, signal.SIGSTOP)
        while procfs.state(child.pid) not in ("T", "t") and time.monotonic() < deadline:
            time.sleep(0.001)
        assert procfs.state(child.pid) in ("T", "t")
        assert procfs.peak_rss_mb(child.pid) > 1
    finally:
        child.kill()
        child.wait()
    meter = procfs.LoadMeter.start()
    assert meter.others() >= 0


# --- the sink ----------------------------------------------------------------------------


async def test_sink_counts_checks_and_answers_waits() -> None:
    with start_sink() as sink:
        connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=sink.cafile))
        async with (
            SinkClient(sink) as control,
            aiohttp.ClientSession(connector=connector) as session,
        ):
            await control.reset()
            waiting = asyncio.create_task(control.wait(2, timeout=30))
            headers = push_headers(
                make_vapid()["private_key"], "mailto:a@example.com", sink.base_url
            )
            for i in range(2):
                async with session.post(
                    sink.endpoint(i), data=b"x" * 100, headers=headers
                ) as response:
                    assert response.status == 201
            async with session.post(sink.endpoint(9), data=b"x") as response:
                assert response.status == 400  # no aes128gcm, TTL or VAPID header
            stats = await waiting
            assert stats["accepted"] == 2
            with pytest.raises(SinkError, match="2 accepted of 3"):
                await control.expect("test", 2)
            with pytest.raises(SinkError, match="only 2 of 5"):
                await control.wait(5, timeout=0.2)


async def test_a_wait_answered_early_does_not_cut_a_later_one_short() -> None:
    """Each wait has its own timer: the control connection is kept alive, and an earlier
    wait's timer firing must not answer a later wait made on it (a 7-round outage run
    once failed at 300 s on this, its first wait's timeout)."""
    with start_sink() as sink:
        connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=sink.cafile))
        headers = push_headers(make_vapid()["private_key"], "mailto:a@example.com", sink.base_url)
        async with (
            SinkClient(sink) as control,
            aiohttp.ClientSession(connector=connector) as session,
        ):

            async def push(i: int) -> None:
                async with session.post(sink.endpoint(i), data=b"x", headers=headers) as answer:
                    assert answer.status == 201

            await control.reset()
            first = asyncio.create_task(control.wait(1, timeout=0.3))
            await push(1)
            assert (await first)["accepted"] == 1
            later = asyncio.create_task(control.wait(2, timeout=30))
            # Past the first wait's timeout: the later one must still be waiting.
            done, _ = await asyncio.wait([later], timeout=1.0)
            assert not done
            await push(2)
            assert (await later)["accepted"] == 2


# --- --compare ---------------------------------------------------------------------------


def test_compare_exports_a_revision_and_refuses_other_folders(tmp_path: Path) -> None:
    commit = compare.resolve("HEAD")
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    compare.export_tree(commit, tmp_path / "src")
    assert (tmp_path / "src" / "setup.cfg").exists()
    assert (tmp_path / "src" / "push_service" / "consumer.py").exists()
    assert not (tmp_path / "src" / ".git").exists()
    with pytest.raises(BenchEnvError):
        compare.resolve("no-such-revision-anywhere")
    with pytest.raises(BenchEnvError, match="not a push_service checkout"):
        compare.prepare(str(tmp_path))


# --- the command -------------------------------------------------------------------------


def run_bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_help_runs_as_a_module_and_as_a_folder() -> None:
    assert "--compare REV|DIR" in run_bench("--help").stdout
    folder = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench"), "--help"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert folder.returncode == 0, folder.stderr
    assert "--rounds" in folder.stdout


def test_a_tiny_run_prints_rounds_medians_and_goals(tmp_path: Path) -> None:
    """The service and the bare ceiling, two rounds of 200 pushes: every part of the
    rounds machinery against the real RabbitMQ and Redis, no figure judged."""
    result = run_bench(
        "-n", "200", "--rounds", "2", "--skip-baselines", "--rounds-only",
        "--log-dir", str(tmp_path), "--json", str(tmp_path / "result.json"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "round 1/2: service" in out
    assert "round 2/2: bare" in out  # the order is reversed every other round
    assert re.search(r"^service\s+200\s+[\d,]+\s", out, re.M), out
    assert "service / bare: pushes/s" in out
    assert re.search(r"service >= 0.55x the bare loop .* (pass|MISS)$", out, re.M), out
    assert "n/a: not measured in this run" in out
    assert (tmp_path / "result.json").exists()
