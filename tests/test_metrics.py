"""The metrics facade over prometheus_client: names, types, values, bounded host labels."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from push_service.metrics import LATENCY_BUCKETS, LoopLagMonitor, Metrics
from tests.support import wait_until

Sample = tuple[str, dict[str, str], float]

# Every family the service defines, with its type: dashboards and alerts depend on these.
SERVICE_FAMILIES = {
    "push_messages_consumed": "counter",
    "push_pushes": "counter",
    "push_retries": "counter",
    "push_invalidations": "counter",
    "push_dead_lettered": "counter",
    "push_in_flight_sends": "gauge",
    "push_consumer_connected": "gauge",
    "push_broker_sessions": "counter",
    "push_request_seconds": "histogram",
    "push_end_to_end_seconds": "histogram",
    "push_event_loop_lag_seconds": "histogram",
    "push_event_loop_lag_max_seconds": "gauge",
    "push_queue_messages": "gauge",
    "push_deferred": "counter",
    "push_expired": "counter",
    "push_circuit_state": "gauge",
    "push_circuit_transitions": "counter",
    "push_parked_messages": "counter",
    "push_held_messages": "counter",
    "push_released_messages": "counter",
    "push_hold_probes": "counter",
    "push_user_service_reports": "counter",
}


def parse(text: str) -> tuple[dict[str, str], list[Sample]]:
    """Family types and samples, read by the client library's own parser."""
    types: dict[str, str] = {}
    samples: list[Sample] = []
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        samples += [(s.name, s.labels, s.value) for s in family.samples]
    return types, samples


def test_every_family_is_exposed_with_its_type() -> None:
    types, _ = parse(Metrics().render())
    assert {k: v for k, v in types.items() if k.startswith("push_")} == SERVICE_FAMILIES


def test_standard_process_and_platform_collectors_are_registered() -> None:
    types, samples = parse(Metrics().render())
    names = {s[0] for s in samples}
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total"} <= names
    assert "process_open_fds" in names
    assert types["python_info"] == "gauge"
    assert "python_gc_objects_collected_total" in names
    assert not any(name.endswith("_created") for name in names), "no _created series"


def test_two_instances_keep_separate_registries() -> None:
    first, second = Metrics(), Metrics()
    first.retries.inc(3)
    assert first.retries.value() == 3 and second.retries.value() == 0
    assert ("push_retries_total", {}, 0.0) in parse(second.render())[1]


def test_updates_reach_the_exposition() -> None:
    metrics = Metrics()
    metrics.pushes.inc(outcome="sent", host="fcm.googleapis.com")
    metrics.pushes.inc(host="fcm.googleapis.com", outcome="sent")  # keyword order is free
    metrics.pushes.inc(2, outcome="gone", host="fcm.googleapis.com")
    metrics.in_flight.inc()
    metrics.deferred.inc(host="fcm.googleapis.com", reason="retry_after")
    metrics.circuit_state.set(2, host="fcm.googleapis.com")
    metrics.parked.inc()
    _, samples = parse(metrics.render())
    assert ("push_pushes_total", {"host": "fcm.googleapis.com", "outcome": "sent"}, 2.0) in samples
    assert ("push_pushes_total", {"host": "fcm.googleapis.com", "outcome": "gone"}, 2.0) in samples
    assert ("push_in_flight_sends", {}, 1.0) in samples
    assert (
        "push_deferred_total",
        {"host": "fcm.googleapis.com", "reason": "retry_after"},
        1.0,
    ) in samples
    assert ("push_circuit_state", {"host": "fcm.googleapis.com"}, 2.0) in samples
    assert ("push_parked_messages_total", {}, 1.0) in samples


def test_counter_and_gauge_arithmetic() -> None:
    metrics = Metrics()
    metrics.invalidations.inc(result="ok")
    metrics.invalidations.inc(2, result="ok")
    metrics.invalidations.inc(result="error")
    assert metrics.invalidations.value(result="ok") == 3
    assert metrics.invalidations.value(result="error") == 1
    assert metrics.invalidations.value(result="never") == 0
    metrics.in_flight.inc()
    metrics.in_flight.inc()
    metrics.in_flight.dec()
    assert metrics.in_flight.value() == 1
    metrics.connected.set(1)
    metrics.connected.set(0)
    assert metrics.connected.value() == 0


def test_a_counter_refuses_to_go_down() -> None:
    with pytest.raises(ValueError, match="negative"):
        Metrics().retries.inc(-1)


def test_missing_or_unknown_labels_are_errors() -> None:
    metrics = Metrics()
    with pytest.raises(ValueError, match="label"):
        metrics.pushes.inc(outcome="sent")
    with pytest.raises(ValueError, match="label"):
        metrics.pushes.inc(outcome="sent", host="h", endpoint="https://x/y")


def test_gauge_series_can_be_removed() -> None:
    metrics = Metrics()
    metrics.queue_messages.set(5, queue="a")
    metrics.queue_messages.set(7, queue="a.dlq")
    metrics.queue_messages.remove(queue="a")
    metrics.queue_messages.remove(queue="never-set")
    assert metrics.queue_messages.labelled() == [{"queue": "a.dlq"}]
    metrics.queue_messages.set(1, queue="a")  # comes back after a removal
    assert metrics.queue_messages.value(queue="a") == 1


def test_host_label_values_are_capped() -> None:
    metrics = Metrics(max_hosts=3)
    hosts = [f"h{i}.push.example" for i in range(10)]
    for host in hosts:
        metrics.pushes.inc(outcome="sent", host=host)
        metrics.expired.inc(host=host)
    for host in hosts[:3]:  # admitted hosts keep their name, also on their next push
        metrics.pushes.inc(outcome="sent", host=host)
    _, samples = parse(metrics.render())
    pushed = {s[1]["host"]: s[2] for s in samples if s[0] == "push_pushes_total"}
    assert pushed == {"h0.push.example": 2, "h1.push.example": 2, "h2.push.example": 2, "other": 7}
    expired = {s[1]["host"] for s in samples if s[0] == "push_expired_total"}
    assert expired == {"h0.push.example", "h1.push.example", "h2.push.example", "other"}
    assert len(metrics.pushes._children) <= 3, "hosts past the cap are not cached"


def test_histogram_buckets_are_cumulative_and_inf_equals_count() -> None:
    metrics = Metrics()
    observations = [0.0005, 0.001, 0.0011, 0.3, 0.5, 0.7, 1.0, 4.0, 70.0, 100.0]
    for value in observations:
        metrics.push_latency.observe(value)
    _, samples = parse(metrics.render())
    buckets = [(s[1]["le"], s[2]) for s in samples if s[0] == "push_request_seconds_bucket"]
    assert len(buckets) == len(LATENCY_BUCKETS) + 1 and buckets[-1][0] == "+Inf"
    counts = dict(buckets)
    assert counts["0.001"] == 2  # le is inclusive
    assert counts["0.5"] == 5 and counts["1.0"] == 7 and counts["60.0"] == 8
    assert [c for _, c in buckets] == sorted(c for _, c in buckets)
    assert counts["+Inf"] == metrics.push_latency.count() == len(observations)
    assert metrics.push_latency.sum() == pytest.approx(sum(observations))


def test_label_values_are_escaped() -> None:
    metrics = Metrics()
    nasty = 'quote " backslash \\ newline \n end'
    metrics.dead_lettered.inc(reason=nasty)
    _, samples = parse(metrics.render())
    assert ("push_dead_lettered_total", {"reason": nasty}, 1.0) in samples


async def test_loop_lag_monitor_sees_a_stall() -> None:
    metrics = Metrics()
    monitor = LoopLagMonitor(metrics, interval=0.01)
    await monitor.start()
    try:
        await wait_until(lambda: metrics.loop_lag.count() > 0, 5, interval=0.01, message="a sample")
        busy_until = time.perf_counter() + 0.2  # the stimulus: CPU work blocking the loop
        while time.perf_counter() < busy_until:
            pass
        await wait_until(
            lambda: metrics.loop_lag_max.value() >= 0.15, 5, interval=0.01, message="the stall"
        )
    finally:
        await monitor.stop()
    assert monitor._task is not None and monitor._task.done()
    _, samples = parse(metrics.render())
    (count,) = [s[2] for s in samples if s[0] == "push_event_loop_lag_seconds_count"]
    assert count >= 2
