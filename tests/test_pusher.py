"""One device's push: in-process retries, parking, the deadline, the TTL header, circuits.

Real HTTP to the outage tests' fake push service (`tests/push_fakes.py`): it answers
each endpoint from a script (a status, headers such as Retry-After), or goes dark
(accepts requests and never answers); and a stub User Service. No RabbitMQ or Redis:
`Pusher.push` returns the outcome, the caller stores it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from push_service.circuits import CircuitPolicy, Circuits, State
from push_service.deadline import Deadline
from push_service.endpoints import EndpointPolicy, host_label
from push_service.errors import PushServiceUnavailable
from push_service.metrics import Metrics
from push_service.models import MAX_PLAINTEXT_BYTES, Device, Notification, parse_notification
from push_service.pusher import PushContext, Pusher
from push_service.retry import PushRetryPolicy
from push_service.status import DeviceOutcome, DeviceRetry
from push_service.vapid import VapidSigner, generate_private_key
from push_service.webpush import WebPushSender, make_session
from tests.push_fakes import Answer, PushService, Seen, push_service
from tests.support import GoneLog, device_keys, unique, wait_until

POLICY = EndpointPolicy(("127.0.0.1",), allow_http=True)
QUICK = PushRetryPolicy(max_tries=10, in_process_seconds=5.0, base_delay=0.01, max_delay=0.05)
# Opens on nothing a test does not mean to; stalls only after a minute.
PATIENT = CircuitPolicy(failures=100, stall_seconds=60, open_seconds=30)


@pytest.fixture
async def pushes() -> AsyncIterator[PushService]:
    async with push_service() as service:
        yield service
        service.come_back()


def scripted(service: PushService, *answers: int | Answer) -> str:
    """A new endpoint that answers in this order, then 201."""
    script = [(a, {}) if isinstance(a, int) else a for a in answers]
    return service.script(unique("d"), *script)


def hits(service: PushService, endpoint: str) -> list[Seen]:
    return service.seen(endpoint.rsplit("/", 1)[1])


@dataclass
class Rig:
    pusher: Pusher
    circuits: Circuits
    metrics: Metrics
    changes: list[tuple[str, State]]
    gone: GoneLog

    async def push(
        self,
        endpoint: str,
        deadline: Deadline | None = None,
        previous: DeviceRetry | None = None,
        arrived: float | None = None,
        n: Notification | None = None,
    ) -> DeviceOutcome | DeviceRetry:
        n = n or notification([endpoint])
        deadline = deadline or Deadline(time.time() + 3600, 3600)
        context = PushContext(deadline, time.monotonic() if arrived is None else arrived)
        return await self.pusher.push(n, device(n, endpoint), context, previous)


MakeRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig() -> AsyncIterator[MakeRig]:
    """Pushers wired as the Runtime wires them; each with its own circuits and metrics."""
    async with contextlib.AsyncExitStack() as stack:
        gone = GoneLog()
        signer = VapidSigner(generate_private_key(), "mailto:ops@example.com")

        async def make(
            retry: PushRetryPolicy = QUICK,
            circuit: CircuitPolicy = PATIENT,
            timeout: float = 5.0,
            concurrency: int = 64,
        ) -> Rig:
            session = await stack.enter_async_context(make_session(POLICY, 64, timeout))
            changes: list[tuple[str, State]] = []
            circuits = Circuits(circuit, lambda c: changes.append((c.origin, c.state)))
            metrics = Metrics()
            sender = WebPushSender(session, signer, POLICY)
            pusher = Pusher(sender, circuits, gone, metrics, retry, concurrency)
            return Rig(pusher, circuits, metrics, changes, gone)

        yield make


def notification(endpoints: list[str], **fields: Any) -> Notification:
    message = {
        "notification_id": unique("n"),
        "user_id": "user-1",
        "devices": [{"endpoint": e, "keys": device_keys()} for e in endpoints],
        "title": "Hello",
        "body": "World",
        **fields,
    }
    return parse_notification(orjson.dumps(message), POLICY)


def device(n: Notification, endpoint: str) -> Device:
    return next(d for d in n.devices if d.endpoint == endpoint)


def retry_of(endpoint: str, not_before: float, attempts: int) -> DeviceRetry:
    d = device(notification([endpoint]), endpoint)
    return DeviceRetry(d.key, endpoint, not_before, attempts, "backoff", "HTTP 500: busy", 500)


def http_date(epoch: float) -> str:
    return email.utils.formatdate(epoch, usegmt=True)


# --- sent, and retried in process --------------------------------------------------------------


async def test_a_push_accepted_at_once_is_sent_with_the_ttl_and_counted(
    make_rig: MakeRig, pushes: PushService
) -> None:
    rig = await make_rig()
    endpoint = scripted(pushes)

    outcome = await rig.push(endpoint)

    assert isinstance(outcome, DeviceOutcome)
    assert (outcome.status, outcome.http_status, outcome.reason, outcome.attempts) == (
        "sent",
        201,
        None,
        1,
    )
    [request] = hits(pushes, endpoint)
    assert request.ttl == 3600
    host = host_label(device(notification([endpoint]), endpoint).origin)
    assert host == pushes.base_url.removeprefix("http://")
    assert rig.metrics.pushes.value(outcome="sent", host=host) == 1
    assert rig.metrics.retries.value() == 0


async def test_transient_failures_are_retried_in_process_within_the_budget(
    make_rig: MakeRig, pushes: PushService
) -> None:
    rig = await make_rig()
    endpoint = scripted(pushes, 500, 502, 503, 201)

    outcome = await rig.push(endpoint)

    assert isinstance(outcome, DeviceOutcome)
    assert (outcome.status, outcome.attempts) == ("sent", 4)
    assert len(hits(pushes, endpoint)) == 4
    assert rig.metrics.retries.value() == 3


async def test_the_budget_counts_from_the_messages_arrival(
    make_rig: MakeRig, pushes: PushService
) -> None:
    # The message waited in this process (other devices' retries) longer than the budget.
    rig = await make_rig()
    endpoint = scripted(pushes, 500, 201)

    outcome = await rig.push(endpoint, arrived=time.monotonic() - QUICK.in_process_seconds)

    assert isinstance(outcome, DeviceRetry)
    assert (outcome.reason, outcome.attempts) == ("backoff", 1)
    assert len(hits(pushes, endpoint)) == 1


# --- parked ----------------------------------------------------------------------------------


async def test_a_retry_beyond_the_budget_is_parked_with_backoff(
    make_rig: MakeRig, pushes: PushService
) -> None:
    slow = PushRetryPolicy(max_tries=10, in_process_seconds=1.0, base_delay=20.0, max_delay=600)
    rig = await make_rig(retry=slow)
    endpoint = scripted(pushes, 500)

    before = time.time()
    outcome = await rig.push(endpoint)
    after = time.time()

    assert isinstance(outcome, DeviceRetry)
    assert (outcome.reason, outcome.attempts, outcome.http_status) == ("backoff", 1, 500)
    assert outcome.last_error == "HTTP 500"
    assert before + 10 <= outcome.not_before <= after + 20  # equal jitter of 20 s
    assert len(hits(pushes, endpoint)) == 1
    host = pushes.base_url.removeprefix("http://")
    assert rig.metrics.deferred.value(host=host, reason="backoff") == 1


@pytest.mark.parametrize(
    ("status", "retry_after", "wait"),
    [
        (429, "75", 75),
        (503, "75", 75),
        (429, "100000", 100_000),  # far past PUSH_RETRY_MAX_DELAY_SECONDS: still honoured
        (503, "http-date", 120),
    ],
)
async def test_retry_after_of_any_length_parks_the_push_until_then(
    make_rig: MakeRig, pushes: PushService, status: int, retry_after: str, wait: int
) -> None:
    rig = await make_rig()
    if retry_after == "http-date":
        retry_after = http_date(time.time() + wait)
    endpoint = scripted(pushes, (status, {"Retry-After": retry_after}))

    before = time.time()
    outcome = await rig.push(endpoint, Deadline(time.time() + 2 * 86400, 86400))
    after = time.time()

    assert isinstance(outcome, DeviceRetry)
    assert (outcome.reason, outcome.attempts, outcome.http_status) == ("retry_after", 1, status)
    assert before + wait - 1 <= outcome.not_before <= after + wait  # an HTTP date is whole seconds
    assert len(hits(pushes, endpoint)) == 1


async def test_a_short_retry_after_is_waited_in_process_and_honoured(
    make_rig: MakeRig, pushes: PushService
) -> None:
    rig = await make_rig()
    endpoint = scripted(pushes, (429, {"Retry-After": "1"}), 201)

    outcome = await rig.push(endpoint)

    assert isinstance(outcome, DeviceOutcome)
    assert (outcome.status, outcome.attempts) == ("sent", 2)
    first, second = hits(pushes, endpoint)
    assert second.at - first.at >= 1.0  # no request before it said


async def test_an_open_circuit_parks_the_push_without_a_request(
    make_rig: MakeRig, pushes: PushService
) -> None:
    rig = await make_rig(circuit=CircuitPolicy(failures=2, open_seconds=30))
    failing = scripted(pushes, 500, 500)
    waiting = scripted(pushes)

    before = time.time()
    first = await rig.push(failing)
    second = await rig.push(waiting)

    assert isinstance(first, DeviceRetry)
    assert (first.reason, first.attempts, first.http_status) == ("circuit_open", 2, 500)
    assert before + 29 <= first.not_before <= time.time() + 30
    assert isinstance(second, DeviceRetry)
    assert (second.reason, second.attempts, second.last_error) == ("circuit_open", 0, None)
    assert len(hits(pushes, failing)) == 2
    assert hits(pushes, waiting) == []
    assert rig.changes == [(pushes.base_url, State.OPEN)]


# --- the deadline and the TTL header -----------------------------------------------------------


async def test_past_the_deadline_nothing_is_sent(make_rig: MakeRig, pushes: PushService) -> None:
    rig = await make_rig()
    endpoint = scripted(pushes)

    outcome = await rig.push(endpoint, Deadline(time.time() - 1, 3600))

    assert isinstance(outcome, DeviceOutcome)
    assert (outcome.status, outcome.reason, outcome.attempts) == ("failed", "expired", 0)
    assert outcome.detail is not None and outcome.detail.startswith("deadline ")
    assert hits(pushes, endpoint) == []
    host = pushes.base_url.removeprefix("http://")
    assert rig.metrics.expired.value(host=host) == 1
    assert rig.metrics.pushes.value(outcome="expired", host=host) == 1


@pytest.mark.parametrize("retry_after", ["120", "4"])
async def test_a_retry_that_would_come_after_the_deadline_expires_at_once(
    make_rig: MakeRig, pushes: PushService, retry_after: str
) -> None:
    # "4" would fit in the in-process budget (5 s), but not before the deadline.
    rig = await make_rig()
    endpoint = scripted(pushes, (503, {"Retry-After": retry_after}), 201)

    started = time.monotonic()
    outcome = await rig.push(endpoint, Deadline(time.time() + 3, 60))

    assert time.monotonic() - started < 3  # no waiting for a retry that cannot happen
    assert isinstance(outcome, DeviceOutcome)
    assert (outcome.status, outcome.reason, outcome.attempts) == ("failed", "expired", 1)
    assert outcome.http_status == 503
    assert outcome.detail is not None and "last error: HTTP 503" in outcome.detail
    assert len(hits(pushes, endpoint)) == 1


async def test_the_ttl_header_is_the_remaining_ttl(make_rig: MakeRig, pushes: PushService) -> None:
    rig = await make_rig()
    endpoint = scripted(pushes)

    await rig.push(endpoint, Deadline(time.time() + 100, 3600))

    [request] = hits(pushes, endpoint)
    assert request.ttl in (99, 100)


async def test_a_parked_retry_not_yet_due_comes_back_untouched_without_a_request(
    make_rig: MakeRig, pushes: PushService
) -> None:
    rig = await make_rig()
    endpoint = scripted(pushes)
    previous = retry_of(endpoint, time.time() + 60, 3)

    outcome = await rig.push(endpoint, previous=previous)

    assert outcome is previous
    assert hits(pushes, endpoint) == []


async def test_a_due_retry_continues_the_count_of_attempts(
    make_rig: MakeRig, pushes: PushService
) -> None:
    rig = await make_rig()
    endpoint = scripted(pushes)

    outcome = await rig.push(endpoint, previous=retry_of(endpoint, time.time() - 1, 3))

    assert isinstance(outcome, DeviceOutcome)
    assert (outcome.status, outcome.attempts) == ("sent", 4)
    assert rig.metrics.retries.value() == 1  # a request after earlier ones is a retry


async def test_a_due_retry_behind_an_open_circuit_keeps_its_last_error(
    make_rig: MakeRig, pushes: PushService
) -> None:
    # The record of a parked device says why it waits: the error of its last request.
    rig = await make_rig(circuit=CircuitPolicy(failures=1, open_seconds=30))
    await rig.push(scripted(pushes, 502))  # opens the origin's circuit
    endpoint = scripted(pushes)

    outcome = await rig.push(endpoint, previous=retry_of(endpoint, time.time() - 1, 3))

    assert isinstance(outcome, DeviceRetry)
    assert (outcome.reason, outcome.attempts) == ("circuit_open", 3)
    assert (outcome.last_error, outcome.http_status) == ("HTTP 500: busy", 500)
    assert hits(pushes, endpoint) == []


async def test_a_retry_that_comes_back_after_the_deadline_expires_with_its_last_error(
    make_rig: MakeRig, pushes: PushService
) -> None:
    rig = await make_rig()
    endpoint = scripted(pushes)
    previous = retry_of(endpoint, time.time() - 1, 3)

    outcome = await rig.push(endpoint, Deadline(time.time() - 0.5, 60), previous)

    assert isinstance(outcome, DeviceOutcome)
    assert (outcome.status, outcome.reason, outcome.attempts) == ("failed", "expired", 3)
    assert outcome.http_status == 500
    assert outcome.detail is not None and outcome.detail.endswith("last error: HTTP 500: busy")
    assert hits(pushes, endpoint) == []


# --- circuits ----------------------------------------------------------------------------------


async def test_server_errors_open_the_circuit(make_rig: MakeRig, pushes: PushService) -> None:
    rig = await make_rig(circuit=CircuitPolicy(failures=3, open_seconds=30))
    endpoint = scripted(pushes, 502, 502, 502)

    outcome = await rig.push(endpoint)

    assert isinstance(outcome, DeviceRetry)
    assert (outcome.reason, outcome.attempts) == ("circuit_open", 3)
    assert rig.circuits.states() == {pushes.base_url: State.OPEN}


async def test_timeouts_open_the_circuit(make_rig: MakeRig, pushes: PushService) -> None:
    rig = await make_rig(circuit=CircuitPolicy(failures=2, open_seconds=30), timeout=0.3)
    endpoint = scripted(pushes)
    pushes.go_dark()

    outcome = await rig.push(endpoint)

    assert isinstance(outcome, DeviceRetry)
    assert (outcome.reason, outcome.attempts) == ("circuit_open", 2)
    assert (outcome.last_error, outcome.http_status) == ("timed out", None)
    assert rig.circuits.states() == {pushes.base_url: State.OPEN}


async def test_throttling_does_not_open_the_circuit(make_rig: MakeRig, pushes: PushService) -> None:
    rig = await make_rig(circuit=CircuitPolicy(failures=2, open_seconds=30))
    throttled = (429, {"Retry-After": "0"})
    endpoint = scripted(pushes, throttled, throttled, throttled, throttled, 201)

    outcome = await rig.push(endpoint)

    assert isinstance(outcome, DeviceOutcome)
    assert (outcome.status, outcome.attempts) == ("sent", 5)
    assert rig.changes == []


@pytest.mark.parametrize("status", [400, 403, 404, 413])
async def test_a_refusal_is_an_answer_and_does_not_open_the_circuit(
    make_rig: MakeRig, pushes: PushService, status: int
) -> None:
    rig = await make_rig(circuit=CircuitPolicy(failures=1, open_seconds=30))
    for _ in range(3):
        outcome = await rig.push(scripted(pushes, status))
        assert isinstance(outcome, DeviceOutcome) and outcome.attempts == 1
    assert rig.changes == []


async def test_a_push_waiting_for_a_stalled_origin_is_parked_and_others_keep_going(
    make_rig: MakeRig, pushes: PushService
) -> None:
    stall = CircuitPolicy(concurrency=1, stall_seconds=0.3, open_seconds=30)
    rig = await make_rig(circuit=stall, timeout=30)
    hung = scripted(pushes)
    waiting = scripted(pushes)
    pushes.go_dark()
    async with push_service() as healthy:
        first = asyncio.create_task(rig.push(hung))
        await wait_until(lambda: len(pushes.requests) == 1, message="the first push to hang")

        started = time.monotonic()
        outcome = await rig.push(waiting)
        waited = time.monotonic() - started
        elsewhere = await rig.push(scripted(healthy))

        assert isinstance(outcome, DeviceRetry)
        # Every slot taken and no answer: parked as busy within a quarter of the stall
        # time, before the circuit itself opens, and not after the 30 s timeout.
        assert (outcome.reason, outcome.attempts) == ("busy", 0)
        assert waited < 5
        assert hits(pushes, waiting) == []
        assert isinstance(elsewhere, DeviceOutcome) and elsewhere.status == "sent"
        assert rig.circuits.states()[healthy.base_url] is State.CLOSED

        def consulted_open() -> bool:  # the next push to it, after the stall time
            try:
                rig.circuits.get(pushes.base_url).check()
            except PushServiceUnavailable:
                return True
            return False

        await wait_until(consulted_open, 5, message="the circuit to open on the stall")

        pushes.come_back()  # the dark one answers at last
        late = await first
        assert isinstance(late, DeviceOutcome) and late.status == "sent"
        assert rig.changes == [(pushes.base_url, State.OPEN), (pushes.base_url, State.CLOSED)]


async def test_the_send_limit_bounds_requests_in_flight(
    make_rig: MakeRig, pushes: PushService
) -> None:
    rig = await make_rig(concurrency=2)
    endpoints = [scripted(pushes) for _ in range(6)]
    n = notification(endpoints)
    pushes.go_dark()
    tasks = [asyncio.create_task(rig.push(e, n=n)) for e in endpoints]
    await wait_until(lambda: len(pushes.requests) == 2, message="two requests in flight")
    await asyncio.wait(tasks, timeout=0.3)  # the others wait for a send slot
    assert len(pushes.requests) == 2

    pushes.come_back()
    outcomes = await asyncio.gather(*tasks)

    assert [o.status for o in outcomes] == ["sent"] * 6
    assert sorted(s.name for s in pushes.requests) == sorted(e.rsplit("/", 1)[1] for e in endpoints)


# --- final failures ---------------------------------------------------------------------------


async def test_max_tries_ends_failed(make_rig: MakeRig, pushes: PushService) -> None:
    three = PushRetryPolicy(max_tries=3, in_process_seconds=2.0, base_delay=0.01, max_delay=0.02)
    rig = await make_rig(retry=three)
    endpoint = scripted(pushes, 500, 500, 500)  # a 4th request would be accepted

    outcome = await rig.push(endpoint)

    assert isinstance(outcome, DeviceOutcome)
    assert (outcome.status, outcome.reason, outcome.attempts) == ("failed", "transient", 3)
    assert (outcome.http_status, outcome.detail) == (500, "HTTP 500")
    assert len(hits(pushes, endpoint)) == 3


async def test_max_tries_counts_the_attempts_before_parking(
    make_rig: MakeRig, pushes: PushService
) -> None:
    rig = await make_rig(retry=PushRetryPolicy(max_tries=5, base_delay=0.01, max_delay=0.02))
    endpoint = scripted(pushes, 500)

    outcome = await rig.push(endpoint, previous=retry_of(endpoint, time.time(), 4))

    assert isinstance(outcome, DeviceOutcome)
    assert (outcome.status, outcome.reason, outcome.attempts) == ("failed", "transient", 5)
    assert len(hits(pushes, endpoint)) == 1


async def test_a_payload_too_large_fails_without_a_request(
    make_rig: MakeRig, pushes: PushService
) -> None:
    rig = await make_rig()
    endpoint = scripted(pushes)
    n = notification([endpoint], data={"blob": "x" * MAX_PLAINTEXT_BYTES})

    outcome = await rig.push(endpoint, n=n)

    assert isinstance(outcome, DeviceOutcome)
    assert (outcome.status, outcome.reason, outcome.attempts) == (
        "failed",
        "payload_too_large",
        0,
    )
    assert hits(pushes, endpoint) == []


@pytest.mark.parametrize("status", [404, 410])
async def test_a_gone_subscription_is_reported_to_the_user_service(
    make_rig: MakeRig, pushes: PushService, status: int
) -> None:
    rig = await make_rig()
    endpoint = scripted(pushes, status)

    outcome = await rig.push(endpoint)

    assert isinstance(outcome, DeviceOutcome)
    assert (outcome.status, outcome.reason, outcome.http_status) == (
        "failed",
        "subscription_gone",
        status,
    )
    assert (outcome.attempts, outcome.deactivation) == (1, "queued")
    assert rig.gone.calls == [("user-1", endpoint, "subscription_gone", status, True)]


async def test_vapid_rejection_fails_without_telling_the_user_service(
    make_rig: MakeRig, pushes: PushService
) -> None:
    rig = await make_rig()

    outcome = await rig.push(scripted(pushes, 401))

    assert isinstance(outcome, DeviceOutcome)
    assert (outcome.reason, outcome.deactivation) == ("vapid_rejected", None)
    assert rig.gone.calls == []
