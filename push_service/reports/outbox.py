"""Where reports wait: durable queues of their own, and the confirmed publish into them.

`<queue>.reports` holds reports to send; `<queue>.reports.delay.<step>` hold reports
waiting to be tried again (a queue-level TTL dead-letters them back, as the push
ladder does); `<queue>.reports.dlq` keeps the ones given up, with the reason. A
report is acknowledged to its producer (a push's outcome recorded, a `/subscribe`
answered) only once the broker has confirmed it: from then on it survives a crash
of the service and a restart of the broker.
"""

from __future__ import annotations

from dataclasses import dataclass

from push_service.broker import ChannelKeeper, ConnectionProvider, json_properties
from push_service.parking import Ladder
from push_service.reports.report import Report
from push_service.topology import Arguments, Topology, publish_declared

# Headers of a report on its way: how often it was tried, and the last error.
TRIES_HEADER = "x-report-tries"
ERROR_HEADER = "x-report-last-error"


@dataclass(frozen=True)
class ReportQueues:
    main: str  # RABBITMQ_QUEUE_NAME: the reports' queues are named after it
    queue_type: str
    ladder: Ladder

    @property
    def queue(self) -> str:
        return f"{self.main}.reports"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dlq"

    @property
    def topology(self) -> Topology:
        """The reports' own topology: its `queue` is where the delay steps lead back to."""
        return Topology(self.queue, self.queue_type)

    def delay_queue(self, tries: int) -> str:
        """The delay step before try `tries + 1`: the n-th retry waits the n-th step."""
        steps = self.ladder.steps
        return Ladder.queue(self.queue, steps[min(max(tries, 1), len(steps)) - 1])

    def declarations(self) -> dict[str, Arguments]:
        own = self.topology
        kind = own.type_arguments()
        return {self.queue: kind, self.dead_letter_queue: kind, **self.ladder.queues(own)}


class ReportOutbox:
    """Makes reports durable: a confirmed publish to the reports queue, on a channel of its own."""

    def __init__(
        self, provider: ConnectionProvider, queues: ReportQueues, topology: Topology, timeout: float
    ) -> None:
        self.queues = queues
        self.topology = topology  # the service's whole topology, declared again if need be
        self.timeout = timeout
        self.channels = ChannelKeeper(provider, timeout, confirms=True)

    async def put(self, report: Report) -> None:
        """Confirmed by the broker on return; BrokerUnavailable otherwise."""
        channel = await self.channels.get()
        await publish_declared(
            channel,
            self.topology,
            self.queues.queue,
            report.to_json(),
            timeout=self.timeout,
            properties=json_properties(report.report_id, {TRIES_HEADER: 0}),
        )

    async def close(self) -> None:
        await self.channels.close()
