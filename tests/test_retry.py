"""The retry policy: bounded tries and time, Retry-After honoured and capped, full jitter."""

from __future__ import annotations

import time

import pytest

from push_service.errors import PermanentPushError, SubscriptionGone, TransientPushError
from push_service.retry import RetryPolicy, _full_jitter_waits, call_with_retries

FAST = RetryPolicy(max_tries=4, max_seconds=10.0, base_delay=0.001, max_delay=0.01)


class Flaky:
    """Raises the given exceptions in turn, then returns 'done'."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.times: list[float] = []

    async def __call__(self) -> str:
        self.calls += 1
        self.times.append(time.monotonic())
        if self.errors:
            raise self.errors.pop(0)
        return "done"


async def test_success_needs_one_call() -> None:
    op = Flaky()
    assert await call_with_retries(op, FAST) == "done"
    assert op.calls == 1


async def test_transient_errors_are_retried_until_success() -> None:
    op = Flaky(TransientPushError("a"), TransientPushError("b"))
    assert await call_with_retries(op, FAST) == "done"
    assert op.calls == 3


async def test_transient_errors_stop_at_max_tries_and_reraise_the_last() -> None:
    op = Flaky(*(TransientPushError(f"try {i}", 503) for i in range(10)))
    with pytest.raises(TransientPushError, match="try 3"):
        await call_with_retries(op, FAST)
    assert op.calls == FAST.max_tries


@pytest.mark.parametrize(
    "error", [PermanentPushError("400"), SubscriptionGone("410", 410), ValueError("bug")]
)
async def test_other_errors_are_not_retried(error: Exception) -> None:
    op = Flaky(error)
    with pytest.raises(type(error)):
        await call_with_retries(op, FAST)
    assert op.calls == 1


async def test_custom_retryable_exceptions() -> None:
    op = Flaky(ConnectionError(), TimeoutError(), TransientPushError("not listed"))
    with pytest.raises(TransientPushError):
        await call_with_retries(op, FAST, (ConnectionError, TimeoutError))
    assert op.calls == 3


async def test_retry_after_is_honoured() -> None:
    op = Flaky(TransientPushError("429", 429, retry_after=0.2))
    started = time.monotonic()
    assert await call_with_retries(op, FAST) == "done"
    assert op.calls == 2
    assert op.times[1] - op.times[0] >= 0.2
    assert time.monotonic() - started < 2.0


async def test_retry_after_above_the_cap_is_capped() -> None:
    policy = RetryPolicy(max_tries=3, max_seconds=30.0, retry_after_cap=0.1, base_delay=0.001)
    op = Flaky(TransientPushError("503", 503, retry_after=120))
    assert await call_with_retries(op, policy) == "done"
    gap = op.times[1] - op.times[0]
    assert 0.1 <= gap < 1.0


async def test_retry_after_beyond_the_time_left_gives_up_at_once() -> None:
    policy = RetryPolicy(max_tries=5, max_seconds=1.0, retry_after_cap=60.0)
    op = Flaky(TransientPushError("503", 503, retry_after=5))
    started = time.monotonic()
    with pytest.raises(TransientPushError) as info:
        await call_with_retries(op, policy)
    assert info.value.retry_after == 5
    assert op.calls == 1
    assert time.monotonic() - started < 2.5  # not the 5 s it was asked to wait


async def test_total_time_is_bounded() -> None:
    policy = RetryPolicy(max_tries=1000, max_seconds=0.3, base_delay=0.05, max_delay=0.1)
    op = Flaky(*(TransientPushError() for _ in range(1000)))
    started = time.monotonic()
    with pytest.raises(TransientPushError):
        await call_with_retries(op, policy)
    assert time.monotonic() - started < 1.5
    assert 1 < op.calls < 1000


def test_full_jitter_delays_stay_within_the_exponential_ceiling() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    for _ in range(50):
        waits = _full_jitter_waits(policy)
        assert waits.send(None) == 0.0  # priming value
        for attempt in range(12):
            delay = waits.send(TransientPushError())
            assert 0.0 <= delay <= min(policy.max_delay, policy.base_delay * 2**attempt)


def test_full_jitter_is_random_and_grows() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=1000.0)
    firsts, tenths = [], []
    for _ in range(200):
        waits = _full_jitter_waits(policy)
        waits.send(None)
        delays = [waits.send(TransientPushError()) for _ in range(10)]
        firsts.append(delays[0])
        tenths.append(delays[9])
    assert len(set(firsts)) > 100  # jittered, not a fixed schedule
    assert max(firsts) <= 1.0
    assert max(tenths) > 10.0  # the ceiling doubled each time (512 by attempt 10)


def test_retry_after_replaces_the_computed_delay_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, retry_after_cap=60.0)
    waits = _full_jitter_waits(policy)
    waits.send(None)
    assert waits.send(TransientPushError(retry_after=7.0)) == 7.0
    assert waits.send(TransientPushError(retry_after=600.0)) == 60.0
    assert waits.send(TransientPushError(retry_after=-3.0)) == 0.0
    assert waits.send(TransientPushError()) <= 0.5 * 2**3


async def test_a_single_try_policy_never_retries() -> None:
    op = Flaky(TransientPushError("once"), TransientPushError("twice"))
    with pytest.raises(TransientPushError, match="once"):
        await call_with_retries(op, RetryPolicy(max_tries=1, base_delay=0.001))
    assert op.calls == 1


async def test_zero_time_budget_gives_up_after_the_first_try() -> None:
    op = Flaky(TransientPushError("first"), TransientPushError("second"))
    with pytest.raises(TransientPushError, match="first"):
        await call_with_retries(op, RetryPolicy(max_tries=5, max_seconds=0.0, base_delay=0.001))
    assert op.calls == 1
