"""Prometheus text format: HELP/TYPE, escaping, exact values, cumulative histograms."""

from __future__ import annotations

import math
import re
import time
from collections import defaultdict

import pytest

from push_service.metrics import Counter, Gauge, Histogram, LoopLagMonitor, Metrics
from tests.support import wait_until

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"(,|$)')


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


def parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = LABEL.match(text, position)
        assert match, f"bad label syntax at {text[position:]!r}"
        labels[match.group(1)] = unescape(match.group(2))
        position = match.end()
    return labels


def parse_value(text: str) -> float:
    return {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}.get(text) or float(text)


Sample = tuple[str, dict[str, str], float]


def parse(text: str) -> tuple[dict[str, str], dict[str, str], list[Sample]]:
    """A strict reader of the text format (version 0.0.4); returns helps, types, samples."""
    assert text.endswith("\n")
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    samples: list[Sample] = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP ") :].partition(" ")
            assert name not in helps, f"duplicate HELP for {name}"
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE ") :].partition(" ")
            assert name not in types, f"duplicate TYPE for {name}"
            assert name in helps, "HELP comes first"
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            types[name] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"bad sample line {line!r}"
            name, labels = match.group(1), parse_labels(match.group(3) or "")
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            family = family if types.get(family) == "histogram" else name
            assert family in types, f"sample {name} before its TYPE"
            samples.append((name, labels, parse_value(match.group(4))))
    return helps, types, samples


def test_every_metric_has_help_and_type() -> None:
    metrics = Metrics()
    metrics.pushes.inc(outcome="sent", host="fcm.googleapis.com")
    metrics.push_latency.observe(0.2)
    metrics.in_flight.inc()
    helps, types, samples = parse(metrics.render())
    assert set(helps) == set(types) == {m.name for m in metrics.all()}
    assert types["push_pushes_total"] == "counter"
    assert types["push_in_flight_sends"] == "gauge"
    assert types["push_request_seconds"] == "histogram"
    assert ("push_pushes_total", {"host": "fcm.googleapis.com", "outcome": "sent"}, 1.0) in samples


def test_label_values_are_escaped() -> None:
    counter = Counter("c_total", "help")
    nasty = 'quote " backslash \\ newline \n end'
    counter.inc(reason=nasty, host="h")
    _, _, samples = parse("\n".join(counter.header() + counter.render()) + "\n")
    assert samples == [("c_total", {"host": "h", "reason": nasty}, 1.0)]


def test_help_text_is_escaped() -> None:
    counter = Counter("c_total", "first line\nsecond \\ part")
    assert counter.header()[0] == "# HELP c_total first line\\nsecond \\\\ part"


def test_values_are_exact() -> None:
    counter = Counter("c_total", "help")
    counter.inc(1_234_567)
    counter.inc(2**40, kind="big")
    gauge = Gauge("g", "help")
    gauge.set(0.1 + 0.2)
    gauge.set(-3, side="neg")
    gauge.set(math.inf, side="inf")
    gauge.set(True, side="bool")
    text = "\n".join(counter.render() + gauge.render())
    assert "c_total 1234567\n" in text + "\n"
    assert f'c_total{{kind="big"}} {2**40}' in text
    _, _, samples = parse(
        "# HELP c_total h\n# TYPE c_total counter\n" + "\n".join(counter.render()) + "\n"
    )
    assert [s[2] for s in samples] == [1_234_567.0, float(2**40)]
    values = {s.split(" ")[0]: s.split(" ")[1] for s in gauge.render()}
    assert float(values["g"]) == 0.1 + 0.2
    assert values['g{side="neg"}'] == "-3"
    assert values['g{side="inf"}'] == "+Inf"
    assert values['g{side="bool"}'] == "1"


def test_counter_and_gauge_arithmetic() -> None:
    counter = Counter("c_total", "help")
    counter.inc(host="a")
    counter.inc(2, host="a")
    counter.inc(host="b")
    assert counter.value(host="a") == 3 and counter.value(host="b") == 1
    assert counter.value(host="never") == 0
    gauge = Gauge("g", "help")
    gauge.inc()
    gauge.inc()
    gauge.dec()
    assert gauge.value() == 1


@pytest.mark.parametrize("labels", [{}, {"host": "fcm"}])
def test_histogram_buckets_are_cumulative_and_inf_equals_count(labels: dict[str, str]) -> None:
    histogram = Histogram("h_seconds", "help", buckets=(0.1, 0.5, 1.0, 5.0))
    observations = [0.05, 0.1, 0.1000001, 0.3, 0.5, 0.7, 1.0, 4.0, 7.0, 100.0]
    for value in observations:
        histogram.observe(value, **labels)
    _, _, samples = parse("\n".join(histogram.header() + histogram.render()) + "\n")
    buckets = [(s[1]["le"], s[2]) for s in samples if s[0] == "h_seconds_bucket"]
    assert [le for le, _ in buckets] == ["0.1", "0.5", "1", "5", "+Inf"]
    counts = [count for _, count in buckets]
    assert counts == [2, 5, 7, 8, 10]  # le is inclusive: 0.1 counts in le="0.1"
    assert counts == sorted(counts)
    for sample in samples:
        assert {k: v for k, v in sample[1].items() if k != "le"} == labels
    (count,) = [s[2] for s in samples if s[0] == "h_seconds_count"]
    (total,) = [s[2] for s in samples if s[0] == "h_seconds_sum"]
    assert count == counts[-1] == len(observations)
    assert total == pytest.approx(sum(observations))


def test_histograms_keep_label_sets_apart() -> None:
    histogram = Histogram("h", "help", buckets=(1.0,))
    histogram.observe(0.5, host="a")
    histogram.observe(2.0, host="b")
    histogram.observe(3.0, host="b")
    _, _, samples = parse("\n".join(histogram.header() + histogram.render()) + "\n")
    per_host: dict[str, dict[str, float]] = defaultdict(dict)
    for name, labels, value in samples:
        per_host[labels["host"]][name + labels.get("le", "")] = value
    assert per_host["a"] == {"h_bucket1": 1, "h_bucket+Inf": 1, "h_sum": 0.5, "h_count": 1}
    assert per_host["b"] == {"h_bucket1": 0, "h_bucket+Inf": 2, "h_sum": 5.0, "h_count": 2}


def test_empty_registry_renders_headers_only() -> None:
    helps, types, samples = parse(Metrics().render())
    assert helps and types and samples == []


async def test_loop_lag_monitor_sees_a_stall() -> None:
    metrics = Metrics()
    monitor = LoopLagMonitor(metrics, interval=0.01)
    await monitor.start()
    try:
        await wait_until(lambda: metrics.loop_lag.counts, 5, interval=0.01, message="a sample")
        busy_until = time.perf_counter() + 0.2  # the stimulus: CPU work blocking the loop
        while time.perf_counter() < busy_until:
            pass
        await wait_until(
            lambda: metrics.loop_lag_max.value() >= 0.15, 5, interval=0.01, message="the stall"
        )
    finally:
        await monitor.stop()
    assert monitor._task is not None and monitor._task.done()
    _, _, samples = parse(metrics.render())
    (count,) = [s[2] for s in samples if s[0] == "push_event_loop_lag_seconds_count"]
    assert count >= 2
