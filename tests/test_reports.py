"""Reports to the User Service through the real broker: outbox, relay, retries, dead letters.

The relay runs in this process against a real RabbitMQ and Redis and a stand-in User
Service that goes down, refuses or answers on cue. Delays are scaled to seconds.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import aiormq
import orjson
import pytest

from push_service.metrics import Metrics
from push_service.parking import Ladder
from push_service.reports import (
    Report,
    ReportOutbox,
    ReportQueues,
    ReportRelay,
    UserServiceClient,
    deactivation,
    registration,
)
from push_service.reports.report import Kind
from push_service.status import DeviceOutcome, StatusStore
from push_service.topology import Topology, declare_topology
from tests.support import RABBITMQ_URL, Rabbit, status_store, unique, wait_until
from tests.user_service_fake import UserServiceFake, user_service_fake

PATHS: dict[Kind, str] = {
    "deactivation": "/api/v1/push-subscriptions/deactivate",
    "registration": "/api/v1/push-subscriptions",
}
STEPS = (0.2, 0.5, 1.0)


@dataclass
class Connected:
    connection: aiormq.abc.AbstractConnection | None


@dataclass
class Rig:
    queues: ReportQueues
    outbox: ReportOutbox
    relay: ReportRelay
    store: StatusStore
    fake: UserServiceFake
    metrics: Metrics
    rabbit: Rabbit

    async def gone(self, index: int = 0) -> Report:
        """A device that failed 410, on record with its report queued, as the pusher leaves it."""
        notification_id, device = unique("n"), f"device-{index}"
        await self.store.begin(notification_id, "u1", 1, fingerprint="f", deadline=time.time() + 60)
        outcome = DeviceOutcome(
            device, f"https://push.example/{index}", "failed", 410, "subscription_gone", 1,
            deactivation="queued",
        )  # fmt: skip
        await self.store.record(notification_id, [outcome])
        report = deactivation(
            user_id="u1",
            endpoint=outcome.endpoint,
            reason="subscription_gone",
            status_code=410,
            notification_id=notification_id,
            device=device,
        )
        await self.outbox.put(report)
        return report

    async def deactivation_of(self, report: Report) -> str | None:
        assert report.notification_id is not None
        record = await self.store.get(report.notification_id)
        assert record is not None
        [device] = record["devices"]
        value: str | None = device["deactivation"]
        return value


@contextlib.asynccontextmanager
async def relay_rig(max_age: float = 3600.0, timeout: float = 2.0) -> AsyncIterator[Rig]:
    queues = ReportQueues(unique("test.push"), "classic", Ladder(STEPS))
    topology = Topology(queues.main, "classic", queues.declarations())
    metrics = Metrics()
    async with contextlib.AsyncExitStack() as stack:
        connection = await aiormq.connect(RABBITMQ_URL)
        stack.push_async_callback(connection.close)
        rabbit = Rabbit(connection)
        stack.push_async_callback(rabbit.delete, *topology.queues)
        await declare_topology(connection, topology)
        fake = await stack.enter_async_context(user_service_fake())
        store = await stack.enter_async_context(status_store("test.reports", 600))
        session = await stack.enter_async_context(aiohttp.ClientSession())
        client = UserServiceClient(session, fake.base_url, PATHS, timeout=timeout)
        relay = ReportRelay(
            client, queues, topology, store_outcome(store), metrics,
            max_age=max_age, concurrency=16, timeout=5.0,
        )  # fmt: skip
        outbox = ReportOutbox(Connected(connection), queues, topology, 5.0)
        stack.push_async_callback(outbox.close)
        await relay.attach(await connection.channel(publisher_confirms=True))
        stack.push_async_callback(relay.stop, 1.0)
        yield Rig(queues, outbox, relay, store, fake, metrics, rabbit)


def store_outcome(store: StatusStore):  # type: ignore[no-untyped-def]
    async def record(notification_id: str, device: str, outcome: str) -> None:
        await store.note_deactivation(notification_id, device, outcome)

    return record


async def test_a_deactivation_reaches_the_user_service_and_its_outcome_is_recorded() -> None:
    async with relay_rig() as rig:
        await rig.fake.down()
        report = await rig.gone()
        assert await rig.deactivation_of(report) == "queued"
        await rig.fake.up()

        await wait_until(lambda: len(rig.fake.accepted) == 1, message="the report")
        await wait_until(
            lambda: _equals(rig.deactivation_of(report), "ok"), message="the outcome on record"
        )

    path, body = rig.fake.accepted[0]
    assert path == PATHS["deactivation"]
    assert body == {
        "report_id": report.report_id,
        "user_id": "u1",
        "endpoint": "https://push.example/0",
        "reason": "subscription_gone",
        "status_code": 410,
    }
    assert rig.metrics.invalidations.value(result="ok") == 1


async def test_a_registration_goes_to_its_own_path() -> None:
    async with relay_rig() as rig:
        report = registration(
            user_id="u9",
            endpoint="https://push.example/r",
            keys={"p256dh": "p", "auth": "a"},
            expiration_time=None,
            replaces="https://push.example/old",
        )
        await rig.outbox.put(report)
        await wait_until(lambda: len(rig.fake.accepted) == 1, message="the registration")

    path, body = rig.fake.accepted[0]
    assert path == PATHS["registration"]
    assert body["report_id"] == report.report_id
    assert (body["user_id"], body["replaces"]) == ("u9", "https://push.example/old")
    assert body["keys"] == {"p256dh": "p", "auth": "a"}
    assert body["subscribed_at"].endswith("Z")


async def test_every_report_arrives_after_the_user_service_comes_back() -> None:
    async with relay_rig() as rig:
        await rig.fake.down()
        reports = [await rig.gone(i) for i in range(40)]

        async def retried_twice() -> bool:  # every report met the outage at least twice
            return rig.metrics.reports.value(kind="deactivation", result="retried") >= 80

        await wait_until(retried_twice, message="the reports to meet the outage")
        assert rig.fake.accepted == []
        await rig.fake.up()
        wanted = {r.report_id for r in reports}
        await wait_until(
            lambda: set(rig.fake.report_ids()) == wanted, timeout=30, message="all 40 reports"
        )
        for report in reports:
            await wait_until(lambda r=report: _equals(rig.deactivation_of(r), "ok"))  # type: ignore[misc]
        assert await rig.rabbit.count(rig.queues.dead_letter_queue) == 0

    # At least once: a duplicate may only repeat a report_id, never invent one.
    assert set(rig.fake.report_ids()) == wanted


async def test_a_refusal_is_final_and_recorded() -> None:
    async with relay_rig() as rig:
        rig.fake.answer("400")
        report = await rig.gone()
        await wait_until(
            lambda: _equals(rig.deactivation_of(report), "failed: HTTP 400"),
            message="the refusal on record",
        )
        assert rig.fake.attempts == 1
        assert rig.metrics.reports.value(kind="deactivation", result="refused") == 1


@pytest.mark.parametrize("status", ["408", "429", "503"])
async def test_busy_answers_are_tried_again(status: str) -> None:
    async with relay_rig() as rig:
        rig.fake.answer(status)
        report = await rig.gone()
        await wait_until(lambda: rig.fake.attempts >= 2, message="a second try")
        assert await rig.deactivation_of(report) == "queued"
        rig.fake.answer("ok")
        await wait_until(lambda: _equals(rig.deactivation_of(report), "ok"))


async def test_a_hanging_user_service_times_out_and_is_tried_again() -> None:
    async with relay_rig(timeout=0.3) as rig:
        rig.fake.hang()
        report = await rig.gone()
        await wait_until(lambda: rig.fake.attempts >= 2, message="a second try after a timeout")
        rig.fake.answer("ok")
        await wait_until(lambda: _equals(rig.deactivation_of(report), "ok"))
    assert rig.fake.report_ids() == {report.report_id: 1}


async def test_a_report_too_old_is_dead_lettered_with_its_reason() -> None:
    async with relay_rig(max_age=1.0) as rig:
        await rig.fake.down()
        report = await rig.gone()
        await wait_until(
            lambda: _count_is(rig, rig.queues.dead_letter_queue, 1), message="the dead letter"
        )
        message = await rig.rabbit.get(rig.queues.dead_letter_queue)
        outcome = await rig.deactivation_of(report)

    assert message is not None
    assert Report.from_json(message.body).report_id == report.report_id
    reason = str(message.header.properties.headers["x-death-reason"])
    assert reason.startswith("gave up after ") and "connection error" in reason
    assert outcome is not None and outcome.startswith("failed: gave up after ")
    assert message.header.properties.message_id == report.report_id


async def test_a_message_that_is_no_report_is_dead_lettered() -> None:
    async with relay_rig() as rig:
        await rig.rabbit.publish(rig.queues.queue, b'{"kind": "nonsense"}')
        await wait_until(lambda: _count_is(rig, rig.queues.dead_letter_queue, 1))
        message = await rig.rabbit.get(rig.queues.dead_letter_queue)
    assert message is not None
    reason = str(message.header.properties.headers["x-death-reason"])
    assert reason.startswith("invalid_report")
    assert rig.fake.attempts == 0


def test_report_ids_are_stable_and_secrets_stay_out_of_them() -> None:
    first = deactivation(user_id="u", endpoint="https://e/1", reason="gone", status_code=410)
    again = deactivation(user_id="u", endpoint="https://e/1", reason="gone", status_code=410)
    other = deactivation(user_id="u", endpoint="https://e/2", reason="gone", status_code=410)
    assert first.report_id == again.report_id != other.report_id
    keys = {"p256dh": "public", "auth": "secret-auth"}
    made = registration(
        user_id="u", endpoint="https://e/1", keys=keys, expiration_time=None, replaces=None
    )
    assert "secret-auth" not in made.report_id
    assert Report.from_json(made.to_json()) == made
    with pytest.raises(ValueError, match="not a report"):
        Report.from_json(orjson.dumps({"kind": "deactivation", "body": {}}))


async def _equals(value: object, wanted: object) -> bool:
    return await value == wanted  # type: ignore[misc]


async def _count_is(rig: Rig, queue: str, wanted: int) -> bool:
    return await rig.rabbit.count(queue) == wanted
