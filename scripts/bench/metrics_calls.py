"""Per-call cost of the metrics facade on the hot path (nanoseconds per call).

    .venv/bin/python scripts/bench/metrics_calls.py                  # push_service.metrics
    .venv/bin/python scripts/bench/metrics_calls.py --module OLD.py  # another metrics.py

`--module` loads a metrics module from a file, e.g. the hand-written registry this
replaced (`git show <commit>:push_service/metrics.py > /tmp/old_metrics.py`), so both
are measured in the same run on the same (shared, noisy) machine: compare the ratios.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any


def load(path: Path | None) -> ModuleType:
    if path is None:
        import push_service.metrics as module

        return module
    spec = importlib.util.spec_from_file_location(f"metrics_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def calls(metrics: Any) -> dict[str, Callable[[], None]]:
    """The updates the consumer and delivery make per push, one by one."""
    return {
        "pushes.inc(outcome, host)": lambda: metrics.pushes.inc(
            outcome="sent", host="fcm.googleapis.com"
        ),
        "messages.inc(result)": lambda: metrics.messages.inc(result="sent"),
        "retries.inc(n)": lambda: metrics.retries.inc(1),
        "in_flight.inc()+dec()": lambda: (metrics.in_flight.inc(), metrics.in_flight.dec()),
        "push_latency.observe(v)": lambda: metrics.push_latency.observe(0.0123),
        "connected.set(v)": lambda: metrics.connected.set(1.0),
    }


def measure(module: ModuleType, number: int, repeat: int) -> dict[str, float]:
    metrics = module.Metrics()
    results = {}
    for name, call in calls(metrics).items():
        best = min(timeit.repeat(call, number=number, repeat=repeat))
        results[name] = best / number * 1e9
    started = timeit.default_timer()
    for _ in range(20):
        metrics.render()
    results["render() [us]"] = (timeit.default_timer() - started) / 20 * 1e6
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", type=Path, action="append", default=[])
    parser.add_argument("--number", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    modules = [None, *args.module]
    table = {
        str(m or "push_service.metrics"): measure(load(m), args.number, args.repeat)
        for m in modules
    }
    names = list(next(iter(table.values())))
    print(
        f"{'call (ns, best of ' + str(args.repeat) + ')':32}"
        + "".join(f"{k[-28:]:>30}" for k in table)
    )
    for name in names:
        print(f"{name:32}" + "".join(f"{row[name]:30.0f}" for row in table.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
