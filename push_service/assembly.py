"""How the consumer side of a `Runtime` is put together from its settings.

The runtime owns the parts' lifetimes (`start`, `stop`); these functions only build
them: the consumer with its delivery, parking, dead letters, schedule and fan-out; the
pusher; the report relay; the circuit policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from push_service.circuits import CircuitPolicy
from push_service.config import Settings
from push_service.consumer import Consumer, ConsumerLimits
from push_service.dead_letters import DeadLetters
from push_service.delivery import Delivery
from push_service.fanout import Fanout
from push_service.hold import Hold
from push_service.lifecycle import Completion
from push_service.parking import Parking
from push_service.pusher import Pusher
from push_service.reports import ReportRelay, UserServiceClient
from push_service.reports.report import Kind
from push_service.retry import PushRetryPolicy
from push_service.schedule import Scheduler
from push_service.status.fanout import FanoutLedger
from push_service.webpush import WebPushSender

# Devices of audience chunks parsed and pushed at once per process (16 chunks of 500).
# Each chunk writes its outcomes to Redis one write at a time, coalescing the rest:
# with two chunks in flight (1,000 devices) each write carried a handful, the topic made
# four times the round trips of the same pushes sent as device lists, and ran at 0.77x
# their pace; with 16, 0.92x, for 26 MB of RSS instead of 12 (scripts/bench/audience.py).
CHUNK_DEVICES_IN_FLIGHT = 8_000


def chunks_in_flight(chunk_size: int) -> int:
    """Audience chunks a process parses and pushes at once; the rest wait unparsed.
    FANOUT_CHUNK_SIZE is at most 1,000: at least 8."""
    return CHUNK_DEVICES_IN_FLIGHT // chunk_size


if TYPE_CHECKING:
    from push_service.runtime import Runtime


def consumer(runtime: Runtime, hold: Hold) -> Consumer:
    """The notification consumer and everything a message goes through."""
    s = runtime.settings
    delivery = Delivery(
        pusher(runtime),
        runtime.store,
        runtime.metrics,
        default_ttl=s.push_default_ttl_seconds,
        retry_window=s.push_retry_window_seconds,
        concurrency=s.push_concurrency,
    )
    limits = ConsumerLimits(
        queue=s.rabbitmq_queue_name,
        queue_type=s.rabbitmq_queue_type,
        prefetch=s.consumer_prefetch,
        max_deliveries=s.max_delivery_attempts,
        max_message_bytes=s.max_message_bytes,
        max_devices=s.max_devices_per_message,
        payload_format=s.push_payload_format,
        key_ids=runtime.keys.ids,
        chunks_in_flight=chunks_in_flight(s.fanout_chunk_size),
    )
    timeout = s.publish_timeout_seconds
    dead_letters = DeadLetters(
        runtime.topology,
        runtime.store,
        delivery.stored,
        runtime.metrics,
        timeout=timeout,
        max_message_bytes=s.max_message_bytes,
    )
    parking = Parking(runtime.ladder, runtime.topology, timeout, runtime.metrics, hold)
    assert runtime.events is not None
    completion = Completion(runtime.store, runtime.events.emit, runtime.events.heard)
    scheduler = Scheduler(
        runtime.topology, runtime.control, runtime.metrics, max_days=s.schedule_max_days,
        record_ttl=s.status_ttl_seconds, timeout=timeout,
    )  # fmt: skip
    fanout = Fanout(
        runtime.registry,
        FanoutLedger(runtime.store),
        delivery,
        runtime.topology,
        chunk_size=s.fanout_chunk_size,
        timeout=timeout,
    )
    return Consumer(
        limits,
        delivery,
        parking,
        dead_letters,
        runtime.policy,
        runtime.metrics,
        completed=completion.completed if runtime.events.enabled else None,
        scheduler=scheduler,
        fanout=fanout,
    )


def pusher(runtime: Runtime) -> Pusher:
    s = runtime.settings
    assert runtime.push_session is not None
    assert runtime.subscriptions is not None
    retry = PushRetryPolicy(
        max_tries=s.push_retry_max_tries,
        in_process_seconds=s.push_retry_in_process_seconds,
        base_delay=s.push_retry_base_delay_seconds,
        max_delay=s.push_retry_max_delay_seconds,
    )
    sender = WebPushSender(runtime.push_session, runtime.keys, runtime.policy)
    gone = runtime.subscriptions.gone
    return Pusher(
        sender, runtime.circuits, gone, runtime.metrics, retry, s.push_concurrency, runtime.receipts
    )


def relay(runtime: Runtime) -> ReportRelay:
    """The report relay: the User Service's side consumer."""
    s = runtime.settings
    assert runtime.user_session is not None
    paths: dict[Kind, str] = {
        "deactivation": s.user_service_deactivate_path,
        "registration": s.user_service_register_path,
    }
    client = UserServiceClient(
        runtime.user_session, s.user_service_url, paths, timeout=s.user_service_timeout_seconds
    )
    return ReportRelay(
        client,
        runtime.report_queues,
        runtime.topology,
        runtime.store.note_deactivation,
        runtime.metrics,
        max_age=s.user_service_report_max_age_seconds,
        concurrency=s.user_service_report_concurrency,
        timeout=s.publish_timeout_seconds,
    )


def circuit_policy(s: Settings) -> CircuitPolicy:
    return CircuitPolicy(
        failures=s.push_circuit_failures,
        stall_seconds=s.push_circuit_stall_seconds,
        open_seconds=s.push_circuit_open_seconds,
        max_open_seconds=s.push_circuit_max_open_seconds,
        concurrency=s.push_origin_concurrency,
        probe_seconds=s.push_timeout_seconds,
    )
