"""Every retry policy of the service, in one place.

Two kinds of retry live here. `call_with_retries` retries an operation in place
(a Redis call during a failover, a User Service request), bounded in tries and time.
Pushes are retried differently: a few times in process, then parked in RabbitMQ
(`push_service.parking`); `PushRetryPolicy` gives their delays and bounds.

`backoff` is archived upstream (and breaks on Python 3.16), so it is imported here
only: replacing it touches this file alone.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import TypeVar

import backoff

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of one retried operation: tries, total time, and the delay curve."""

    max_tries: int = 5
    max_seconds: float = 60.0
    base_delay: float = 0.5
    max_delay: float = 30.0


@dataclass(frozen=True)
class PushRetryPolicy:
    """Retries of one device's push over the life of its notification.

    `max_tries` counts requests, not waits: a push parked behind an open circuit
    makes none. Retries whose delay still fits in `in_process_seconds` (counted from
    the message's arrival) wait in process; later ones are parked.
    """

    max_tries: int = 10
    in_process_seconds: float = 5.0
    base_delay: float = 0.5
    max_delay: float = 600.0

    def delay(self, tries: int) -> float:
        """Exponential backoff with "equal jitter" after `tries` failed requests."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** max(tries - 1, 0))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not crypto


def _full_jitter_waits(policy: RetryPolicy) -> Generator[float, BaseException | None, None]:
    """Exponential backoff with full jitter (delays drawn from 0 to the ceiling)."""
    yield 0.0  # priming value, discarded by backoff
    attempt = 0
    while True:
        ceiling = min(policy.max_delay, policy.base_delay * 2**attempt)
        attempt += 1
        yield random.uniform(0, ceiling)  # noqa: S311 - jitter, not crypto


async def call_with_retries(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    retry_on: type[Exception] | tuple[type[Exception], ...],
) -> T:
    """Run `operation` until it succeeds, raises a non-retryable error, or bounds run out.

    The last retryable exception is re-raised when the bounds run out.
    """
    started = time.monotonic()
    try:
        # The common case, success at once, pays nothing for the retry machinery.
        return await operation()
    except retry_on as exc:
        first_error = exc
    replayed = False

    async def attempt() -> T:
        nonlocal replayed
        if not replayed:
            replayed = True
            raise first_error  # lets backoff count the try already made and wait after it
        return await operation()

    retried: Callable[[], Awaitable[T]] = backoff.on_exception(
        _full_jitter_waits,
        retry_on,
        max_tries=policy.max_tries,
        max_time=max(0.0, started + policy.max_seconds - time.monotonic()),
        jitter=None,
        logger=None,
        policy=policy,
    )(attempt)
    return await retried()
