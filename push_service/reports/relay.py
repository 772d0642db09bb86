"""The relay: hands the reports waiting in RabbitMQ to the User Service, off the delivery path.

It consumes `<queue>.reports` on a channel of its own with its own prefetch, so a User
Service that is down or hangs holds at most USER_SERVICE_REPORT_CONCURRENCY reports
and never a push. Each report is POSTed once per delivery:
- answered (2xx, or a 4xx other than 408/429): the outcome goes to the device's status
  record (`deactivation`), then the report is acked;
- not answered: it is published (confirmed) to the delay step of its next try, then
  acked; the step's TTL brings it back. Once its next try would come after
  USER_SERVICE_REPORT_MAX_AGE_SECONDS from its creation, it goes to
  `<queue>.reports.dlq` with the reason instead.
Every step publishes before it acks: a crash in between redelivers the report, and
its stable `report_id` lets the User Service drop the second copy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.common import FieldValue

from push_service import broker
from push_service.broker import json_properties
from push_service.errors import BrokerUnavailable
from push_service.metrics import Metrics
from push_service.reports.client import Attempt, UserServiceClient
from push_service.reports.outbox import ERROR_HEADER, TRIES_HEADER, ReportQueues
from push_service.reports.report import Report
from push_service.status import RedisUnavailable
from push_service.topology import Topology, publish_declared

log = logging.getLogger(__name__)

# (notification_id, device, outcome): writes a deactivation's outcome to its record.
RecordOutcome = Callable[[str, str, str], Awaitable[object]]
NOT_CONFIGURED = "skipped: USER_SERVICE_URL not configured"


class ReportRelay:
    def __init__(
        self,
        client: UserServiceClient,
        queues: ReportQueues,
        topology: Topology,
        record: RecordOutcome,
        metrics: Metrics,
        *,
        max_age: float,
        concurrency: int,
        timeout: float,
    ) -> None:
        self.client = client
        self.queues = queues
        self.topology = topology
        self.record = record
        self.metrics = metrics
        self.max_age = max_age
        self.concurrency = concurrency
        self.timeout = timeout
        self.channel: AbstractChannel | None = None
        self.consumer_tag: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def attach(self, channel: AbstractChannel) -> None:
        """Consume reports on a fresh channel (the supervisor's, on each connect)."""
        await channel.basic_qos(prefetch_count=self.concurrency)
        self.channel = channel
        ok = await channel.basic_consume(self.queues.queue, self._on_message, no_ack=False)
        self.consumer_tag = ok.consumer_tag

    async def stop(self, grace: float) -> None:
        """Stop taking reports; unfinished ones stay unacked and come back later."""
        await broker.stop_consuming(self.channel, self.consumer_tag, self._tasks, grace)

    async def _on_message(self, message: DeliveredMessage) -> None:
        # A task of our own: closing the channel must not cancel a report half sent.
        task = asyncio.create_task(self._handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, message: DeliveredMessage) -> None:
        try:
            await self._relay(message)
        except (*RedisUnavailable, BrokerUnavailable) as exc:
            log.warning("report not finished (%s); it will be sent again", exc)
            await broker.settle(message, self.channel, ack=False)
            return
        except Exception:
            log.exception("unexpected error relaying a report; it will be sent again")
            await broker.settle(message, self.channel, ack=False)
            return
        await broker.settle(message, self.channel, ack=True)

    async def _relay(self, message: DeliveredMessage) -> None:
        try:
            report = Report.from_json(message.body)
        except ValueError as exc:
            await self._dead_letter(message, f"invalid_report: {exc}", 0, "unknown")
            return
        if not self.client.configured:
            await self._answered(report, Attempt(True, NOT_CONFIGURED), "skipped")
            return
        attempt = await self.client.send(report)
        if attempt.answered:
            await self._answered(report, attempt, "ok" if attempt.outcome == "ok" else "refused")
            return
        await self._retry_later(message, report, attempt)

    async def _answered(self, report: Report, attempt: Attempt, result: str) -> None:
        if report.kind == "deactivation":
            self.metrics.invalidations.inc(result=attempt.outcome.split(":", 1)[0])
        self.metrics.reports.inc(kind=report.kind, result=result)
        if result == "refused":
            log.warning(
                "the User Service refused %s report %s: %s",
                report.kind,
                report.report_id,
                attempt.outcome,
            )
        await self._record(report, attempt.outcome)

    async def _retry_later(
        self, message: DeliveredMessage, report: Report, attempt: Attempt
    ) -> None:
        tries = _tries(message) + 1
        queue = self.queues.delay_queue(tries)
        step = self.queues.ladder.steps[min(tries, len(self.queues.ladder.steps)) - 1]
        if time.time() + step > report.created + self.max_age:
            age = time.time() - report.created
            reason = f"gave up after {tries} tries over {age:.0f}s: {attempt.outcome}"
            await self._dead_letter(message, reason, tries, report.kind)
            await self._record(report, f"failed: {reason}")
            if report.kind == "deactivation":
                self.metrics.invalidations.inc(result="failed")
            return
        headers = _headers(message, {TRIES_HEADER: tries, ERROR_HEADER: attempt.outcome[:500]})
        await self._publish(message, queue, headers)
        self.metrics.reports.inc(kind=report.kind, result="retried")
        log.info(
            "%s report %s not answered (%s); try %d in %.0fs",
            report.kind, report.report_id, attempt.outcome, tries + 1, step,
        )  # fmt: skip

    async def _dead_letter(
        self, message: DeliveredMessage, reason: str, tries: int, kind: str
    ) -> None:
        headers = _headers(message, {TRIES_HEADER: tries, "x-death-reason": reason[:1000]})
        await self._publish(message, self.queues.dead_letter_queue, headers)
        self.metrics.reports.inc(kind=kind, result="dead_lettered")
        log.error("report dead-lettered to %s: %s", self.queues.dead_letter_queue, reason)

    async def _publish(
        self, message: DeliveredMessage, queue: str, headers: dict[str, FieldValue]
    ) -> None:
        properties = json_properties(message.header.properties.message_id, headers)
        await publish_declared(
            message.channel,
            self.topology,
            queue,
            message.body,
            timeout=self.timeout,
            properties=properties,
        )

    async def _record(self, report: Report, outcome: str) -> None:
        if report.notification_id and report.device:
            await self.record(report.notification_id, report.device, outcome)


def _tries(message: DeliveredMessage) -> int:
    tries = (message.header.properties.headers or {}).get(TRIES_HEADER)
    return tries if isinstance(tries, int) else 0


def _headers(message: DeliveredMessage, extra: dict[str, FieldValue]) -> dict[str, FieldValue]:
    # The broker's own x-death bookkeeping grows with every hop: leave it behind.
    kept = {
        k: v
        for k, v in (message.header.properties.headers or {}).items()
        if not k.startswith("x-death") and not k.startswith("x-first-death")
    }
    return {**kept, **extra}
