"""The runtime: the long-lived parts of one service process, their start and stop order."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiormq.abc import AbstractChannel

from push_service import amqp_timestamps, assembly, redis_client
from push_service.broker import Publisher
from push_service.circuits import Circuit, Circuits
from push_service.config import Settings
from push_service.consumer import Consumer
from push_service.endpoints import EndpointPolicy, host_label
from push_service.events import EXCHANGE_TYPE, Events
from push_service.hold import Hold
from push_service.lifecycle import Subscribed, SubscribeRequest, Subscriptions
from push_service.metrics import LoopLagMonitor, Metrics
from push_service.parking import Ladder, service_topology
from push_service.queue_depth import QueueDepthMonitor
from push_service.receipts import Receipts
from push_service.recovery import Recovery, recovery_exchange
from push_service.registry import Registry, Subscription
from push_service.reports import ReportOutbox, ReportQueues
from push_service.schedule import scheduled_queues
from push_service.status import RedisUnavailable, StatusStore
from push_service.status.control import RecordControl
from push_service.supervisor import BrokerSupervisor
from push_service.vapid_keys import VapidKeys
from push_service.webpush import make_session

log = logging.getLogger(__name__)


class Runtime:
    """The long-lived parts of one service process. `start()` and `stop()` are their only owner."""

    def __init__(self, settings: Settings, keys: VapidKeys) -> None:
        amqp_timestamps.install()
        self.settings = settings
        self.metrics = Metrics()
        self.policy = EndpointPolicy(settings.push_endpoint_allowlist, settings.push_allow_http)
        self.keys = keys
        self.redis = redis_client.connect(
            settings.redis_url,
            settings.redis_sentinels,
            settings.redis_sentinel_master,
            settings.redis_cluster_nodes,
        )
        self.primary_watch = redis_client.PrimaryWatch(self.redis)
        self.store = StatusStore(
            self.redis,
            settings.redis_key_prefix,
            settings.status_ttl_seconds,
            replicas=settings.redis_wait_replicas,
            replica_timeout=settings.redis_wait_timeout_seconds,
        )
        self.registry = Registry(self.redis, settings.redis_key_prefix)
        self.ladder = Ladder(settings.push_retry_ladder_seconds)
        self.report_queues = ReportQueues(
            settings.rabbitmq_queue_name,
            settings.rabbitmq_queue_type,
            Ladder(settings.user_service_report_retry_seconds),
        )
        exchanges = {settings.events_exchange: EXCHANGE_TYPE} if settings.events_exchange else {}
        exchanges[recovery_exchange(settings.rabbitmq_queue_name)] = "fanout"
        self.topology = service_topology(
            settings.rabbitmq_queue_name,
            settings.rabbitmq_queue_type,
            self.ladder,
            exchanges,
            {**scheduled_queues(settings), **self.report_queues.declarations()},
        )
        self.control = RecordControl(self.store)
        self.receipts = Receipts.from_settings(settings, keys)
        self.circuits = Circuits(assembly.circuit_policy(settings), self._circuit_changed)
        self.push_session: aiohttp.ClientSession | None = None
        self.user_session: aiohttp.ClientSession | None = None
        self.consumer: Consumer | None = None
        self.recovery: Recovery | None = None
        self.supervisor: BrokerSupervisor | None = None
        self.publisher: Publisher | None = None
        self.events: Events | None = None
        self.outbox: ReportOutbox | None = None
        self.subscriptions: Subscriptions | None = None
        self.queue_depth: QueueDepthMonitor | None = None
        self.loop_monitor = LoopLagMonitor(self.metrics)
        self._redis_error: str | None = None

    async def start(self) -> None:
        s = self.settings
        self.push_session = make_session(self.policy, s.push_concurrency, s.push_timeout_seconds)
        self.user_session = aiohttp.ClientSession()
        hold = Hold(
            self.topology, self.policy, self.redis, s.redis_key_prefix,
            s.publish_timeout_seconds, self.metrics,
        )  # fmt: skip
        self.supervisor = BrokerSupervisor(
            s.rabbitmq_urls,
            topology=self.topology,
            attach=self._attach,
            drain=self._drain,
            side=[assembly.relay(self)],
            metrics=self.metrics,
            # Which replica a connection belongs to, in RabbitMQ's connection list.
            name=f"push_service {socket.gethostname()} pid {os.getpid()}",
        )
        timeout = s.publish_timeout_seconds
        self.publisher = Publisher(self.supervisor, s.rabbitmq_queue_name, timeout)
        self.events = Events(self.supervisor, s.events_exchange, timeout)
        self.outbox = ReportOutbox(self.supervisor, self.report_queues, self.topology, timeout)
        self.subscriptions = Subscriptions(self.registry, self.outbox.put, self.events.emit)
        self.consumer = assembly.consumer(self, hold)
        self.recovery = Recovery(
            self.circuits, hold, self.supervisor, self.metrics,
            take=self.consumer.take, timeout=timeout,
        )  # fmt: skip
        await self.loop_monitor.start()
        await self.primary_watch.start()
        await self.supervisor.start()
        if s.queue_depth_interval_seconds > 0:
            self.queue_depth = QueueDepthMonitor(
                self.supervisor, lambda: self.topology.queues, self.metrics,
                interval=s.queue_depth_interval_seconds,
            )  # fmt: skip
            await self.queue_depth.start()
        await self._redis_ok()  # a wrong REDIS_URL or password is logged at start-up

    async def _attach(self, channel: AbstractChannel) -> None:
        assert self.consumer is not None
        assert self.recovery is not None
        await self.consumer.attach(channel)
        await self.recovery.attach(channel)

    async def _drain(self, grace: float) -> None:
        if self.consumer is not None:
            await self.consumer.stop(grace)

    def _circuit_changed(self, circuit: Circuit) -> None:
        host = host_label(circuit.origin)
        self.metrics.circuit_state.set(float(circuit.state), host=host)
        self.metrics.circuit_transitions.inc(host=host, state=circuit.state.name.lower())
        if self.recovery is not None:
            self.recovery.circuit_changed(circuit)

    async def stop(self) -> None:
        """Consumer first (drain within the grace period), then HTTP sessions, then Redis."""
        if self.queue_depth is not None:
            await self.queue_depth.stop()
        if self.recovery is not None:
            await self.recovery.stop()  # no new probes or releases; the consumer drains
        if self.supervisor is not None:
            await self.supervisor.stop(self.settings.shutdown_grace_seconds)
        for keeper in (self.events, self.outbox):
            if keeper is not None:
                await keeper.close()
        for session in (self.push_session, self.user_session):
            if session is not None:
                await session.close()
        await self.primary_watch.stop()
        await self.redis.aclose()
        await self.loop_monitor.stop()

    async def readiness(self) -> dict[str, Any]:
        supervisor = self.supervisor
        return {
            "rabbitmq": bool(supervisor and supervisor.connection is not None),
            "rabbitmq_node": supervisor.node if supervisor else None,
            "consuming": bool(supervisor and supervisor.consuming),
            "redis": await self._redis_ok(),
            "redis_primary": redis_client.primary(self.redis),
            "in_flight": self.consumer.in_flight if self.consumer else 0,
        }

    async def _redis_ok(self) -> bool:
        try:
            async with asyncio.timeout(1.0):
                ok = await self.store.ping()
        except (TimeoutError, *RedisUnavailable) as exc:
            self._note_redis(f"{type(exc).__name__}: {exc}")
            return False
        self._note_redis(None)
        return ok

    def _note_redis(self, error: str | None) -> None:
        """Log Redis becoming unavailable (or available again) once per change."""
        s = self.settings
        shown = redis_client.describe(
            s.redis_url, s.redis_sentinels, s.redis_sentinel_master, s.redis_cluster_nodes
        )
        if error is not None and self._redis_error is None:
            log.warning("Redis at %s is unavailable: %s", shown, error)
        elif error is None and self._redis_error is not None:
            log.info("Redis at %s is available again", shown)
        self._redis_error = error

    async def publish(
        self, body: bytes, message_id: str, headers: Mapping[str, str | int | bool]
    ) -> None:
        assert self.publisher is not None, "publish() before start()"
        await self.publisher.publish(body, message_id, headers)

    async def emit(self, event: str, body: Mapping[str, Any], *, event_id: str) -> None:
        assert self.events is not None, "emit() before start()"
        await self.events.emit(event, body, event_id=event_id)

    async def subscribe(self, request: SubscribeRequest) -> Subscribed:
        assert self.subscriptions is not None, "subscribe() before start()"
        return await self.subscriptions.subscribe(request)

    async def unsubscribe(self, endpoint: str, auth: str) -> Subscription | None:
        assert self.subscriptions is not None, "unsubscribe() before start()"
        return await self.subscriptions.unsubscribe(endpoint, auth)

    async def remove_subscription(self, device: str) -> Subscription | None:
        assert self.subscriptions is not None, "remove_subscription() before start()"
        return await self.subscriptions.remove(device)
