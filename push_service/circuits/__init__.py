"""Isolation between push services: a circuit breaker per origin (`breaker`) and the
bounded set of them a process keeps (`registry`)."""

from push_service.circuits.breaker import (
    FIRST_PATIENCE,
    FIRST_REQUESTS,
    Circuit,
    CircuitPolicy,
    State,
)
from push_service.circuits.registry import Circuits

__all__ = ["FIRST_PATIENCE", "FIRST_REQUESTS", "Circuit", "CircuitPolicy", "Circuits", "State"]
