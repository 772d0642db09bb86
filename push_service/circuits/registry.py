"""The circuits of all origins seen: one per origin, bounded, each change reported once."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from push_service.circuits.breaker import Circuit, CircuitPolicy, State

log = logging.getLogger("push_service.circuits")

MAX_CIRCUITS = 10_000  # origins remembered; idle closed circuits are forgotten first


class Circuits:
    """The circuits of all origins seen, bounded; reports every change once."""

    def __init__(
        self,
        policy: CircuitPolicy,
        on_change: Callable[[Circuit], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._on_change = on_change
        self._clock = clock
        self._circuits: OrderedDict[str, Circuit] = OrderedDict()

    def get(self, origin: str) -> Circuit:
        circuit = self._circuits.get(origin)
        if circuit is None:
            circuit = Circuit(origin, self.policy, self._changed, self._clock)
            self._circuits[origin] = circuit
            self._forget_idle()
        return circuit

    def __contains__(self, origin: object) -> bool:
        return origin in self._circuits

    def states(self) -> dict[str, State]:
        return {origin: c.state for origin, c in self._circuits.items()}

    def _forget_idle(self) -> None:
        """Forget the oldest idle closed circuit, else the oldest with no request out.

        Never the newest (the caller is about to use it: a forgotten circuit's next
        change would not be found) nor one with requests out (a second circuit for
        its origin would double the origin's request limit). Open circuits are
        forgotten too when nothing else can be, or many dark origins would grow the
        registry without bound.
        """
        if len(self._circuits) <= MAX_CIRCUITS:
            return
        newest = next(reversed(self._circuits))
        quiet: str | None = None
        for origin, circuit in self._circuits.items():
            if origin == newest:
                break
            if circuit.idle:
                del self._circuits[origin]
                return
            if quiet is None and circuit.in_flight == 0:
                quiet = origin
        if quiet is not None:
            del self._circuits[quiet]

    def _changed(self, circuit: Circuit, why: str) -> None:
        self._circuits.move_to_end(circuit.origin)
        level = logging.WARNING if circuit.state is State.OPEN else logging.INFO
        log.log(
            level,
            "circuit of push service %s is %s: %s",
            circuit.origin,
            circuit.state.name.lower().replace("_", "-"),
            why,
            extra={"endpoint_origin": circuit.origin},
        )
        if self._on_change is not None:
            self._on_change(circuit)
