"""Every retry policy of the service, in one place.

`backoff` is archived upstream (and breaks on Python 3.16), so it is imported
here only: replacing it touches this file alone.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import TypeVar

import backoff

from push_service.errors import TransientPushError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of one retried operation: tries, total time, and the delay curve."""

    max_tries: int = 5
    max_seconds: float = 60.0
    retry_after_cap: float = 60.0
    base_delay: float = 0.5
    max_delay: float = 30.0


def _full_jitter_waits(policy: RetryPolicy) -> Generator[float, BaseException | None, None]:
    """Exponential backoff with full jitter, or the server's Retry-After when it gave one.

    backoff sends each exception into the generator, which is what lets a 429's
    Retry-After replace the computed delay.
    """
    exc = yield 0.0  # priming value, discarded by backoff
    attempt = 0
    while True:
        if isinstance(exc, TransientPushError) and exc.retry_after is not None:
            delay = min(max(exc.retry_after, 0.0), policy.retry_after_cap)
        else:
            ceiling = min(policy.max_delay, policy.base_delay * 2**attempt)
            delay = random.uniform(0, ceiling)  # noqa: S311 - jitter, not crypto
        attempt += 1
        exc = yield delay


async def call_with_retries(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    retry_on: type[Exception] | tuple[type[Exception], ...] = TransientPushError,
) -> T:
    """Run `operation` until it succeeds, raises a non-retryable error, or bounds run out.

    The last retryable exception is re-raised when the bounds run out. A
    Retry-After longer than the time left gives up at once rather than retry early.
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

    return await _with_backoff(attempt, policy, retry_on, started)


async def _with_backoff(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    retry_on: type[Exception] | tuple[type[Exception], ...],
    started: float,
) -> T:
    deadline = started + policy.max_seconds

    def _give_up(exc: Exception) -> bool:
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is None:
            return False
        wait = min(retry_after, policy.retry_after_cap)
        return bool(time.monotonic() + wait > deadline)

    retried: Callable[[], Awaitable[T]] = backoff.on_exception(
        _full_jitter_waits,
        retry_on,
        max_tries=policy.max_tries,
        max_time=max(0.0, deadline - time.monotonic()),
        jitter=None,
        giveup=_give_up,
        logger=None,
        policy=policy,
    )(attempt)
    return await retried()
