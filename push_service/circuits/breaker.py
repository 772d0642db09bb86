"""Isolation between push services: a circuit breaker and a request limit per origin.

One push service going dark must not take the others down with it. Each origin
(scheme, host, port) has a `Circuit`:
- at most `concurrency` requests in flight (FIRST_REQUESTS until it first answers);
  more wait for a slot, but only while the push service keeps answering (an answer
  within a few of its usual latencies), so a dark one cannot hold consumer slots: a
  push finding every slot taken and the origin overdue is parked at once ("busy") and
  held (`push_service.hold`) until the origin answers again or its circuit opens: one
  round trip, not one per patience until stall detection decides;
- closed: requests flow. `failures` transient failures in a row (timeouts, connection
  errors, 5xx), or no answer at all for `stall_seconds` while requests are out, open it;
- open: no requests; pushes are parked (without a request) until the cool-down ends;
- half-open: one probe request; an answer closes the circuit, a failure opens it again
  for twice as long, up to `max_open_seconds`.
State is per process: each replica learns on its own, which also spreads the probes;
only a recovery is shared (`push_service.recovery` tells the other replicas, and
`force_open`/`close` let it act on a circuit from outside).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from push_service.errors import PushServiceUnavailable

# Waiting for a slot: the origin is overdue after this many of its usual latencies with
# no answer (bounded below, and above by a quarter of the stall time); before its first
# answer, after FIRST_PATIENCE. The floor outlasts the pauses of a push service that
# answers in milliseconds (a loaded machine, a collection): each such pause parked the
# healthy pushes waiting for a slot, a round trip each and half a second late.
PATIENCE_LATENCIES = 4.0
MIN_PATIENCE = 0.25
FIRST_PATIENCE = 0.25
# Before its first answer an origin gets at most this many requests at once, then its
# whole `concurrency`: one that is dark from the start (or a typo'd host that accepts
# connections) then hangs a few requests, their connections and handshakes, not all.
FIRST_REQUESTS = 8
LATENCY_WEIGHT = 0.2  # of a new sample in the moving average


class State(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True)
class CircuitPolicy:
    failures: int = 5
    stall_seconds: float = 5.0
    open_seconds: float = 5.0
    max_open_seconds: float = 15.0
    concurrency: int = 64
    probe_seconds: float = 10.0  # how long a probe may take: the push timeout


Listener = Callable[["Circuit", str], None]


class _Request:
    """One request's hold on its circuit (a class: cheaper than a generator per push)."""

    __slots__ = ("_circuit", "_probe", "_started")

    def __init__(self, circuit: Circuit) -> None:
        self._circuit = circuit
        self._probe = False
        self._started = 0.0

    async def __aenter__(self) -> None:
        self._probe = await self._circuit._enter()
        self._started = self._circuit._clock()

    async def __aexit__(self, *exc: object) -> None:
        self._circuit._leave(self._probe, self._started)


class Circuit:
    def __init__(
        self,
        origin: str,
        policy: CircuitPolicy,
        listener: Listener,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.origin = origin
        self.policy = policy
        self.state = State.CLOSED
        self._listener = listener
        self._clock = clock
        self._slots = asyncio.Semaphore(min(FIRST_REQUESTS, policy.concurrency))
        self._narrow = policy.concurrency > FIRST_REQUESTS  # until the first answer
        self._failures = 0
        self._cooldown = policy.open_seconds
        self.open_until = 0.0
        self._in_flight = 0
        self._progress = clock()  # last answer, or when requests started going out
        self._probing = False
        self._latency: float | None = None  # moving average of answered requests' time
        self._busy_parked = False  # pushes parked "busy" wait for the next answer

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def idle(self) -> bool:
        return self.state is State.CLOSED and self._in_flight == 0

    def overdue(self) -> bool:
        """Closed, but requests are out and none was answered for the patience: a push
        parked "busy" would only be parked again. Opens the circuit once it stalled."""
        self.review()
        quiet = self._clock() - self._progress
        return self.state is State.CLOSED and self._in_flight > 0 and quiet >= self._patience()

    def review(self) -> None:
        """Open the circuit if requests are out and none was answered for the stall time."""
        now = self._clock()
        if self.state is State.CLOSED and self._stalled(now):
            self._open(now, f"no answer for {self.policy.stall_seconds:g}s")

    def check(self) -> None:
        """Raise PushServiceUnavailable if no request should go to this origin now."""
        now = self._clock()
        if self.state is State.CLOSED:
            if not self._stalled(now):  # the common case, per push: no further call
                return
            self.review()
        if self.state is State.OPEN:
            if now < self.open_until:
                raise PushServiceUnavailable(f"circuit of {self.origin} is open", self.open_until)
            self._change(State.HALF_OPEN, "cool-down over, probing")
        if self._probing:
            until = now + self.policy.probe_seconds
            raise PushServiceUnavailable(f"circuit of {self.origin} is probing", until)

    def refusal(self) -> PushServiceUnavailable | None:
        """Why a request now would be refused at once, or None if it may go (or wait for
        a slot of an origin that keeps answering): what `request()` would raise, found
        without a request, so that a push refused by every origin can skip the request
        path altogether (`push_service.delivery`)."""
        try:
            self.check()
        except PushServiceUnavailable as exc:
            return exc
        if not self._slots.locked():
            return None
        now = self._clock()
        quiet, patience = now - self._progress, self._patience()
        return self._busy(now, quiet, patience) if quiet >= patience else None

    def request(self) -> _Request:
        """`async with`: hold one of the origin's request slots; report the answer with
        `answered`/`failed`. Raises PushServiceUnavailable when no request should go now."""
        return _Request(self)

    async def _enter(self) -> bool:
        """Take a slot (waiting while the origin answers); True if this is the probe."""
        self.check()
        if self._slots.locked():
            await self._acquire()
            try:
                self.check()  # while this push waited, the circuit may have opened, or probed
            except PushServiceUnavailable:
                self._slots.release()
                raise
        else:
            await self._slots.acquire()  # free: no suspension, no timeout to arm
        probe = self.state is State.HALF_OPEN
        self._probing = self._probing or probe
        if self._in_flight == 0:
            self._progress = self._clock()
        self._in_flight += 1
        return probe

    def _leave(self, probe: bool, started: float) -> None:
        self._in_flight -= 1
        self._slots.release()
        if probe:
            self._probing = False
        if self._progress >= started:  # answered meanwhile: a latency sample
            sample = self._clock() - started
            average = self._latency
            self._latency = (
                sample if average is None else average + LATENCY_WEIGHT * (sample - average)
            )

    def answered(self) -> None:
        """The push service answered (any status but a server error): it is up."""
        self._progress = self._clock()
        if self._narrow:
            self._narrow = False
            for _ in range(self.policy.concurrency - FIRST_REQUESTS):
                self._slots.release()  # its whole concurrency, waking waiters
        self._failures = 0
        if self.state is not State.CLOSED:
            self._cooldown = self.policy.open_seconds
            self._busy_parked = False
            self._change(State.CLOSED, "answering again")
        elif self._busy_parked:  # the pushes held meanwhile may go now (recovery)
            self._busy_parked = False
            self._listener(self, "answering again after a pause; its held pushes go now")

    def failed(self, detail: str, answered: bool) -> None:
        """A timeout, connection error (answered=False) or server error (answered=True)."""
        now = self._clock()
        if answered:
            self._progress = now
        self._failures += 1
        if self.state is State.HALF_OPEN:
            self._cooldown = min(self._cooldown * 2, self.policy.max_open_seconds)
            self._open(now, f"probe failed: {detail}")
        elif self.state is State.CLOSED and self._failures >= self.policy.failures:
            self._open(now, f"{self._failures} failures in a row, last: {detail}")

    async def _acquire(self) -> None:
        """Wait for a slot while the origin keeps answering; else PushServiceUnavailable.

        Every slot taken and no answer for a few of the origin's usual latencies: a push
        service that answers at all frees slots far faster, so the push is parked
        ("busy") at once rather than hold its consumer slot until the circuit opens.
        """
        while True:
            now = self._clock()
            patience = self._patience()
            quiet = now - self._progress
            if quiet >= patience:
                raise self._busy(now, quiet, patience)
            try:
                async with asyncio.timeout(patience - quiet):
                    await self._slots.acquire()
            except TimeoutError:
                self.check()
            else:
                return

    def _busy(self, now: float, quiet: float, patience: float) -> PushServiceUnavailable:
        self._busy_parked = True  # the next answer releases what is held meanwhile
        detail = f"every request slot of {self.origin} taken, no answer for {quiet:.2g}s"
        return PushServiceUnavailable(detail, now + patience, "busy")

    def _patience(self) -> float:
        longest = max(MIN_PATIENCE, self.policy.stall_seconds / 4)
        if self._latency is None:
            return min(FIRST_PATIENCE, longest)
        return min(max(MIN_PATIENCE, PATIENCE_LATENCIES * self._latency), longest)

    def force_open(self, seconds: float, why: str) -> None:
        """Open for `seconds` (0: probe with the next push), whatever the state: pushes
        held from before a restart say the origin was dark when last seen."""
        if self.state is State.OPEN:
            return
        self.open_until = self._clock() + seconds
        self._change(State.OPEN, why)

    def close(self, why: str) -> None:
        """Close an open or half-open circuit: another replica's probe was answered."""
        if self.state is State.CLOSED:
            return
        self._progress = self._clock()
        self._failures = 0
        self._cooldown = self.policy.open_seconds
        self._change(State.CLOSED, why)

    def _stalled(self, now: float) -> bool:
        return self._in_flight > 0 and now - self._progress > self.policy.stall_seconds

    def _open(self, now: float, why: str) -> None:
        self.open_until = now + self._cooldown
        self._change(State.OPEN, f"{why}; no requests for {self._cooldown:g}s")

    def _change(self, state: State, why: str) -> None:
        self.state = state
        self._listener(self, why)
