"""Per-origin circuits: when they open, how they probe, how they close, and the request limit.

A fake clock drives every time-based rule (stall, cool-down): the tests move it
forward instead of waiting. Only the wait for a request slot polls on real time, so
the policies here keep `stall_seconds` small where a push waits for a slot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from push_service import circuits as circuits_module
from push_service.circuits import Circuit, CircuitPolicy, Circuits, State, registry
from push_service.errors import PushServiceUnavailable
from tests.support import wait_until

ORIGIN = "https://push.example.net"


class Clock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Rig:
    clock: Clock
    circuits: Circuits
    changes: list[tuple[str, State]] = field(default_factory=list)

    def circuit(self, origin: str = ORIGIN) -> Circuit:
        return self.circuits.get(origin)

    def states(self, origin: str = ORIGIN) -> list[State]:
        return [state for changed, state in self.changes if changed == origin]


def make_rig(**policy: float) -> Rig:
    clock = Clock()
    changes: list[tuple[str, State]] = []
    circuits = Circuits(
        CircuitPolicy(**policy),  # type: ignore[arg-type]
        lambda c: changes.append((c.origin, c.state)),
        clock,
    )
    return Rig(clock, circuits, changes)


@pytest.fixture
def rig() -> Rig:
    return make_rig(failures=3, stall_seconds=5, open_seconds=4, max_open_seconds=20)


async def fail(circuit: Circuit, answered: bool = True) -> None:
    async with circuit.request():
        circuit.failed("HTTP 500" if answered else "timed out", answered=answered)


async def answer(circuit: Circuit) -> None:
    async with circuit.request():
        circuit.answered()


class Held:
    """Requests that stay in flight until released: a push service that does not answer."""

    def __init__(self, circuit: Circuit) -> None:
        self.circuit = circuit
        self.release = asyncio.Event()
        self.inside = 0
        self.most_inside = 0
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, count: int = 1) -> None:
        self.tasks += [asyncio.create_task(self._one()) for _ in range(count)]

    async def _one(self) -> None:
        async with self.circuit.request():
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            await self.release.wait()
            self.inside -= 1

    async def finish(self) -> list[BaseException | None]:
        self.release.set()
        return list(await asyncio.gather(*self.tasks, return_exceptions=True))


@pytest.fixture
async def held(rig: Rig) -> AsyncIterator[Held]:
    hold = Held(rig.circuit())
    yield hold
    await hold.finish()


# --- opening -------------------------------------------------------------------------------


async def test_opens_on_the_nth_failure_in_a_row_and_not_before(rig: Rig) -> None:
    circuit = rig.circuit()
    for _ in range(2):
        await fail(circuit)
        circuit.check()  # still closed: requests flow
    assert rig.circuits.states() == {ORIGIN: State.CLOSED}
    assert rig.changes == []

    await fail(circuit)

    assert circuit.state is State.OPEN
    assert rig.states() == [State.OPEN]
    with pytest.raises(PushServiceUnavailable) as raised:
        circuit.check()
    assert raised.value.until == rig.clock.now + 4
    assert raised.value.reason == "circuit_open"


async def test_an_answer_resets_the_count_of_failures(rig: Rig) -> None:
    circuit = rig.circuit()
    for _ in range(5):
        await fail(circuit)
        await fail(circuit)
        await answer(circuit)
    assert circuit.state is State.CLOSED
    assert rig.changes == []


async def test_timeouts_count_like_server_errors(rig: Rig) -> None:
    circuit = rig.circuit()
    for _ in range(3):
        await fail(circuit, answered=False)
    assert circuit.state is State.OPEN


async def test_an_open_circuit_makes_no_request_and_lets_none_wait(rig: Rig) -> None:
    circuit = rig.circuit()
    for _ in range(3):
        await fail(circuit)
    entered = False
    with pytest.raises(PushServiceUnavailable):
        async with circuit.request():
            entered = True
    assert not entered


async def test_a_stalled_origin_opens_without_any_failure(rig: Rig, held: Held) -> None:
    circuit = rig.circuit()
    held.start()
    await wait_until(lambda: held.inside == 1, message="the request to go out")

    rig.clock.advance(5)  # exactly the stall time: not yet
    circuit.check()
    rig.clock.advance(0.1)

    with pytest.raises(PushServiceUnavailable) as raised:
        circuit.check()
    assert circuit.state is State.OPEN
    assert rig.states() == [State.OPEN]
    assert raised.value.until == rig.clock.now + 4


async def test_no_requests_out_is_no_stall(rig: Rig) -> None:
    circuit = rig.circuit()
    await answer(circuit)
    rig.clock.advance(3600)  # an origin nobody pushed to for an hour is not stalled
    circuit.check()
    await answer(circuit)
    assert rig.changes == []


async def test_answers_to_other_requests_keep_a_slow_one_from_stalling_the_origin(
    rig: Rig, held: Held
) -> None:
    circuit = rig.circuit()
    held.start()
    await wait_until(lambda: held.inside == 1, message="the slow request to go out")
    for _ in range(3):
        rig.clock.advance(4)
        await answer(circuit)  # the push service keeps answering the others
        circuit.check()
    assert circuit.state is State.CLOSED

    rig.clock.advance(5.1)  # then nothing more for longer than the stall time
    with pytest.raises(PushServiceUnavailable):
        circuit.check()


async def test_a_waiting_push_is_parked_once_the_origin_stalls() -> None:
    rig = make_rig(concurrency=1, stall_seconds=0.2, open_seconds=4)
    circuit = rig.circuit()
    held = Held(circuit)
    held.start()
    await wait_until(lambda: held.inside == 1, message="the first request to go out")
    waiter = asyncio.create_task(answer(circuit))

    done, _ = await asyncio.wait({waiter}, timeout=0.3)  # several slot polls
    assert not done, "a push waits for the slot while the origin is not stalled"
    rig.clock.advance(0.3)

    await wait_until(waiter.done, timeout=5, message="the waiting push to give up")
    with pytest.raises(PushServiceUnavailable):
        waiter.result()
    assert circuit.state is State.OPEN
    assert held.inside == 1  # the slot is still held: the waiter left without it
    await held.finish()


async def test_a_push_that_waited_for_a_slot_is_parked_if_the_circuit_opened_meanwhile() -> None:
    rig = make_rig(concurrency=1, failures=1, stall_seconds=60)
    circuit = rig.circuit()
    failing = asyncio.Event()

    async def first() -> None:
        async with circuit.request():
            await failing.wait()
            circuit.failed("HTTP 502", answered=True)

    holder = asyncio.create_task(first())
    waiter = asyncio.create_task(answer(circuit))
    done, _ = await asyncio.wait({waiter}, timeout=0.1)
    assert not done, "the second push waits for the only slot"
    failing.set()
    await holder
    with pytest.raises(PushServiceUnavailable):
        await waiter
    assert circuit.state is State.OPEN


# --- half-open, probes, cool-down ------------------------------------------------------------


async def open_circuit(rig: Rig) -> Circuit:
    circuit = rig.circuit()
    for _ in range(rig.circuits.policy.failures):
        await fail(circuit)
    assert circuit.state is State.OPEN
    return circuit


async def test_after_the_cool_down_exactly_one_probe_goes_through(rig: Rig) -> None:
    circuit = await open_circuit(rig)
    rig.clock.advance(3.9)
    with pytest.raises(PushServiceUnavailable):
        circuit.check()
    rig.clock.advance(0.1)

    probe = Held(circuit)
    others = Held(circuit)
    probe.start()
    await wait_until(lambda: probe.inside == 1, message="the probe to go out")
    others.start(10)
    results = await others.finish()

    assert circuit.state is State.HALF_OPEN
    assert others.most_inside == 0
    assert all(isinstance(r, PushServiceUnavailable) for r in results)
    # Pushes behind the probe wait at most as long as a probe may take.
    assert {r.until for r in results if isinstance(r, PushServiceUnavailable)} == {
        rig.clock.now + rig.circuits.policy.probe_seconds
    }
    await probe.finish()


async def test_concurrent_pushes_after_the_cool_down_send_a_single_probe(rig: Rig) -> None:
    circuit = await open_circuit(rig)
    rig.clock.advance(4)
    crowd = Held(circuit)
    crowd.start(20)
    await wait_until(lambda: sum(t.done() for t in crowd.tasks) == 19, message="19 refusals")
    assert crowd.inside == 1
    results = await crowd.finish()
    assert sum(r is None for r in results) == 1


async def test_an_answered_probe_closes_the_circuit(rig: Rig) -> None:
    circuit = await open_circuit(rig)
    rig.clock.advance(4)

    await answer(circuit)

    assert circuit.state is State.CLOSED
    assert rig.states() == [State.OPEN, State.HALF_OPEN, State.CLOSED]
    await answer(circuit)
    await answer(circuit)  # requests flow again, concurrently too
    both = Held(circuit)
    both.start(2)
    await wait_until(lambda: both.inside == 2, message="two requests at once")
    await both.finish()


async def test_a_probe_answered_with_a_client_error_closes_it_too(rig: Rig) -> None:
    # 404, 400, 429: the push service is up even if this push did not go through.
    circuit = await open_circuit(rig)
    rig.clock.advance(4)
    async with circuit.request():
        circuit.answered()
    assert circuit.state is State.CLOSED


async def test_a_failed_probe_doubles_the_cool_down_up_to_the_max(rig: Rig) -> None:
    circuit = await open_circuit(rig)
    cool_downs = [circuit.open_until - rig.clock.now]
    for _ in range(5):
        rig.clock.now = circuit.open_until
        await fail(circuit, answered=False)  # the probe
        assert circuit.state is State.OPEN
        cool_downs.append(circuit.open_until - rig.clock.now)

    assert cool_downs == [4, 8, 16, 20, 20, 20]


async def test_after_closing_the_next_opening_starts_from_the_first_cool_down(rig: Rig) -> None:
    circuit = await open_circuit(rig)
    for _ in range(2):
        rig.clock.now = circuit.open_until
        await fail(circuit)
    assert circuit.open_until - rig.clock.now == 16
    rig.clock.now = circuit.open_until
    await answer(circuit)

    await open_circuit(rig)

    assert circuit.open_until - rig.clock.now == 4


async def test_a_probe_that_ends_without_an_outcome_frees_the_probe(rig: Rig) -> None:
    # A push cancelled mid-request (shutdown): the next push becomes the probe.
    circuit = await open_circuit(rig)
    rig.clock.advance(4)
    probe = Held(circuit)
    probe.start()
    await wait_until(lambda: probe.inside == 1, message="the probe to go out")
    probe.tasks[0].cancel()
    await asyncio.gather(*probe.tasks, return_exceptions=True)

    await answer(circuit)

    assert circuit.state is State.CLOSED


# --- the listener and the log ---------------------------------------------------------------


async def test_the_listener_and_the_log_hear_each_change_once(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="push_service.circuits")
    circuit = await open_circuit(rig)
    for _ in range(10):
        with pytest.raises(PushServiceUnavailable):
            circuit.check()
    circuit.failed("a late timeout", answered=False)  # a request from before it opened
    rig.clock.advance(4)
    await fail(circuit)  # probe fails
    rig.clock.now = circuit.open_until
    await answer(circuit)  # probe answered
    for _ in range(10):
        await answer(circuit)

    expected = [State.OPEN, State.HALF_OPEN, State.OPEN, State.HALF_OPEN, State.CLOSED]
    assert rig.states() == expected
    records = [r for r in caplog.records if r.name == "push_service.circuits"]
    assert [r.levelno for r in records] == [
        logging.WARNING,
        logging.INFO,
        logging.WARNING,
        logging.INFO,
        logging.INFO,
    ]
    assert all(getattr(r, "endpoint_origin", None) == ORIGIN for r in records)
    assert "3 failures in a row, last: HTTP 500" in records[0].getMessage()
    assert "probe failed" in records[2].getMessage()
    assert records[4].getMessage().startswith(f"circuit of push service {ORIGIN} is closed")


# --- isolation and the request limit ----------------------------------------------------------


async def test_origins_have_their_own_circuits(rig: Rig) -> None:
    dark = await open_circuit(rig)
    healthy = rig.circuit("https://other.example.net")
    await answer(healthy)
    healthy.check()
    assert rig.circuit() is dark
    assert rig.circuits.states() == {ORIGIN: State.OPEN, "https://other.example.net": State.CLOSED}


async def test_the_per_origin_limit_holds_under_concurrent_requests() -> None:
    rig = make_rig(concurrency=3, stall_seconds=60)
    crowd = Held(rig.circuit())
    crowd.start(12)
    await wait_until(lambda: crowd.inside == 3, message="three requests in flight")
    other = Held(rig.circuit("https://other.example.net"))
    other.start(3)  # another origin is not held up by this one's limit
    await wait_until(lambda: other.inside == 3, message="the other origin's requests")

    await asyncio.wait(crowd.tasks, timeout=0.2)  # the rest keep waiting
    assert crowd.inside == 3

    results = await crowd.finish()
    assert results == [None] * 12
    assert crowd.most_inside == 3
    await other.finish()


async def test_the_registry_stays_bounded_and_forgets_idle_closed_circuits_first(
    monkeypatch: pytest.MonkeyPatch, rig: Rig
) -> None:
    monkeypatch.setattr(registry, "MAX_CIRCUITS", 5)
    dark = await open_circuit(rig)
    busy = Held(rig.circuit("https://busy.example"))
    busy.start()
    await wait_until(lambda: busy.inside == 1, message="a request in flight")

    for i in range(50):
        await answer(rig.circuit(f"https://idle-{i}.example"))

    states = rig.circuits.states()
    assert len(states) <= 5
    assert states[ORIGIN] is State.OPEN and rig.circuit() is dark  # what it learnt is kept
    assert "https://busy.example" in states
    assert "https://idle-49.example" in states
    await busy.finish()


async def test_the_registry_stays_bounded_when_many_origins_are_dark(
    monkeypatch: pytest.MonkeyPatch, rig: Rig
) -> None:
    monkeypatch.setattr(registry, "MAX_CIRCUITS", 5)
    for i in range(50):
        circuit = rig.circuit(f"https://dark-{i}.example")
        for _ in range(3):
            await fail(circuit)
        assert circuit.state is State.OPEN
        assert rig.circuit(circuit.origin) is circuit  # its own state stays shared

    assert len(rig.circuits.states()) <= 5


async def test_a_new_origin_keeps_its_circuit_when_every_other_one_is_busy(
    monkeypatch: pytest.MonkeyPatch, rig: Rig
) -> None:
    monkeypatch.setattr(registry, "MAX_CIRCUITS", 3)
    busy = [Held(rig.circuit(f"https://busy-{i}.example")) for i in range(3)]
    for hold in busy:
        hold.start()
    await wait_until(lambda: all(h.inside == 1 for h in busy), message="three requests out")

    new = rig.circuit("https://new.example")
    for _ in range(3):
        await fail(new)

    assert rig.circuit("https://new.example") is new
    assert rig.states("https://new.example") == [State.OPEN]
    assert all(h.circuit.origin in rig.circuits.states() for h in busy)  # none forgotten
    for hold in busy:
        await hold.finish()


# --- a new origin, and pushes parked "busy" --------------------------------------------------


async def test_a_new_origin_gets_few_requests_until_it_first_answers() -> None:
    rig = make_rig(concurrency=20, stall_seconds=60)
    circuit = rig.circuit()
    dark = Held(circuit)
    dark.start(12)
    await wait_until(lambda: dark.inside == circuits_module.FIRST_REQUESTS, message="first ones")
    await asyncio.wait(dark.tasks, timeout=0.1)  # the rest wait: nothing was answered yet
    assert dark.inside == circuits_module.FIRST_REQUESTS

    circuit.answered()  # one of them answered: the whole concurrency
    await wait_until(lambda: dark.inside == 12, message="every request out")
    more = Held(circuit)
    more.start(12)
    await wait_until(lambda: dark.inside + more.inside == 20, message="up to its concurrency")
    await asyncio.wait(more.tasks, timeout=0.1)
    assert dark.inside + more.inside == 20
    await dark.finish()
    await more.finish()


async def test_an_origin_is_overdue_while_requests_are_out_and_none_answered() -> None:
    rig = make_rig(concurrency=1, stall_seconds=8, open_seconds=4)
    circuit = rig.circuit()
    assert not circuit.overdue()  # nothing out
    held = Held(circuit)
    held.start()
    await wait_until(lambda: held.inside == 1, message="a request out")
    assert not circuit.overdue()
    rig.clock.advance(circuits_module.FIRST_PATIENCE)
    assert circuit.overdue()
    assert circuit.state is State.CLOSED
    rig.clock.advance(8)  # past the stall time: asking opens it
    assert not circuit.overdue()
    assert rig.circuits.states() == {ORIGIN: State.OPEN}
    await held.finish()


async def test_an_answer_after_a_busy_park_is_heard_though_the_circuit_stayed_closed() -> None:
    rig = make_rig(concurrency=1, stall_seconds=60)
    heard: list[State] = []
    rig.circuits._on_change = lambda c: heard.append(c.state)
    circuit = rig.circuit()
    held = Held(circuit)
    held.start()
    await wait_until(lambda: held.inside == 1, message="a request out")
    rig.clock.advance(circuits_module.FIRST_PATIENCE)
    with pytest.raises(PushServiceUnavailable) as parked:
        await answer(circuit)
    assert parked.value.reason == "busy"
    assert heard == []

    circuit.answered()  # the request out is answered: the held pushes may go
    assert heard == [State.CLOSED]
    circuit.answered()
    assert heard == [State.CLOSED]  # once per pause
    await held.finish()


async def test_refusal_tells_what_a_request_now_would_meet_without_making_one() -> None:
    """Rule: `refusal()` is None while a request may go (or wait for an answering
    origin's slot); else the error `request()` would raise: busy once every slot is
    taken and none was answered for the patience (and the next answer is then heard),
    circuit_open while open."""
    rig = make_rig(concurrency=1, stall_seconds=8, open_seconds=4)
    heard: list[State] = []
    rig.circuits._on_change = lambda c: heard.append(c.state)
    circuit = rig.circuit()
    assert circuit.refusal() is None  # a free slot
    held = Held(circuit)
    held.start()
    await wait_until(lambda: held.inside == 1, message="a request out")
    assert circuit.refusal() is None  # every slot taken, but not for the patience yet
    rig.clock.advance(circuits_module.FIRST_PATIENCE)
    busy = circuit.refusal()
    assert busy is not None and busy.reason == "busy"
    circuit.answered()
    assert heard == [State.CLOSED]  # heard as after a busy park by request()
    rig.clock.advance(8 + circuits_module.FIRST_PATIENCE)  # stalled: asking opens it
    refused = circuit.refusal()
    assert refused is not None and refused.reason == "circuit_open"
    assert circuit.state is State.OPEN
    await held.finish()
