"""The retry policies: bounded tries and time, full jitter; the push delays."""

from __future__ import annotations

import time

import pytest

from push_service.errors import PermanentPushError, SubscriptionGone, TransientPushError
from push_service.retry import PushRetryPolicy, RetryPolicy, _full_jitter_waits, call_with_retries

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
    assert await call_with_retries(op, FAST, TransientPushError) == "done"
    assert op.calls == 1


async def test_transient_errors_are_retried_until_success() -> None:
    op = Flaky(TransientPushError("a"), TransientPushError("b"))
    assert await call_with_retries(op, FAST, TransientPushError) == "done"
    assert op.calls == 3


async def test_transient_errors_stop_at_max_tries_and_reraise_the_last() -> None:
    op = Flaky(*(TransientPushError(f"try {i}", 503) for i in range(10)))
    with pytest.raises(TransientPushError, match="try 3"):
        await call_with_retries(op, FAST, TransientPushError)
    assert op.calls == FAST.max_tries


@pytest.mark.parametrize(
    "error", [PermanentPushError("400"), SubscriptionGone("410", 410), ValueError("bug")]
)
async def test_other_errors_are_not_retried(error: Exception) -> None:
    op = Flaky(error)
    with pytest.raises(type(error)):
        await call_with_retries(op, FAST, TransientPushError)
    assert op.calls == 1


async def test_custom_retryable_exceptions() -> None:
    op = Flaky(ConnectionError(), TimeoutError(), TransientPushError("not listed"))
    with pytest.raises(TransientPushError):
        await call_with_retries(op, FAST, (ConnectionError, TimeoutError))
    assert op.calls == 3


async def test_total_time_is_bounded() -> None:
    policy = RetryPolicy(max_tries=1000, max_seconds=0.3, base_delay=0.05, max_delay=0.1)
    op = Flaky(*(TransientPushError() for _ in range(1000)))
    started = time.monotonic()
    with pytest.raises(TransientPushError):
        await call_with_retries(op, policy, TransientPushError)
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


async def test_a_single_try_policy_never_retries() -> None:
    op = Flaky(TransientPushError("once"), TransientPushError("twice"))
    with pytest.raises(TransientPushError, match="once"):
        await call_with_retries(op, RetryPolicy(max_tries=1, base_delay=0.001), TransientPushError)
    assert op.calls == 1


async def test_zero_time_budget_gives_up_after_the_first_try() -> None:
    op = Flaky(TransientPushError("first"), TransientPushError("second"))
    with pytest.raises(TransientPushError, match="first"):
        await call_with_retries(
            op, RetryPolicy(max_tries=5, max_seconds=0.0, base_delay=0.001), TransientPushError
        )
    assert op.calls == 1


def test_push_delays_grow_with_jitter_up_to_the_cap() -> None:
    policy = PushRetryPolicy(base_delay=0.5, max_delay=600.0)
    for tries in range(1, 16):
        ceiling = min(600.0, 0.5 * 2 ** (tries - 1))
        delays = {policy.delay(tries) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered
    assert policy.delay(30) <= 600.0
