"""Notification deadlines: plausible publisher times, the first deadline, the remaining TTL.

Pure arithmetic: every function takes `now` (or the deadline does), so a fixed clock
of made-up epoch seconds stands in for the real one.
"""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from push_service.deadline import (
    MAX_AGE,
    MAX_CLOCK_SKEW,
    TIMESTAMP_RESOLUTION,
    ZERO_TTL_GRACE,
    Deadline,
    first_deadline,
    from_iso,
    publisher_time,
    to_iso,
)

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
DAY = 24 * 3600.0


def stamp(epoch: float) -> datetime.datetime:
    """An AMQP timestamp as pamqp decodes it: whole seconds, UTC."""
    return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC)


# --- publisher_time ------------------------------------------------------------------------


def test_no_timestamp_is_no_publish_time() -> None:
    assert publisher_time(None, NOW) is None


@pytest.mark.parametrize(
    "offset",
    [0.0, -60.0, -MAX_AGE + 1, MAX_CLOCK_SKEW - 1, -3 * DAY],
)
def test_plausible_timestamps_are_taken_as_they_are(offset: float) -> None:
    assert publisher_time(stamp(NOW + offset), NOW) == int(NOW + offset)


@pytest.mark.parametrize(
    ("offset", "why"),
    [
        (MAX_CLOCK_SKEW + 1, "a clock ahead by more than the skew allowed"),
        (10 * 365 * DAY, "a clock years ahead"),
        (-MAX_AGE - 1, "older than any TTL: a bad clock, not an age"),
    ],
)
def test_implausible_timestamps_are_ignored(offset: float, why: str) -> None:
    assert publisher_time(stamp(NOW + offset), NOW) is None, why


def test_a_zero_timestamp_from_a_peer_default_is_ignored() -> None:
    assert publisher_time(datetime.datetime.fromtimestamp(0, datetime.UTC), NOW) is None


# --- first_deadline ------------------------------------------------------------------------


def test_without_a_publish_time_the_deadline_counts_from_now() -> None:
    assert first_deadline(NOW, None, 3600, DAY) == NOW + 3600


def test_a_publish_time_in_the_past_shortens_the_deadline() -> None:
    # Published 10 minutes ago with TTL 1 h: 50 minutes (and the timestamp's rounding) left.
    published = NOW - 600
    deadline = first_deadline(NOW, published, 3600, DAY)
    assert deadline == published + TIMESTAMP_RESOLUTION + 3600
    assert deadline - NOW == pytest.approx(3001)


def test_a_publish_time_ahead_of_our_clock_does_not_lengthen_the_deadline() -> None:
    assert first_deadline(NOW, NOW + 200, 3600, DAY) == NOW + 3600


def test_a_message_older_than_its_ttl_is_already_expired() -> None:
    deadline = Deadline(first_deadline(NOW, NOW - 7200, 3600, DAY), 3600)
    assert deadline.expired(NOW)


def test_the_retry_window_caps_a_long_ttl() -> None:
    assert first_deadline(NOW, None, 28 * 24 * 3600, DAY) == NOW + DAY


def test_ttl_zero_gets_one_immediate_attempt() -> None:
    deadline = Deadline(first_deadline(NOW, None, 0, DAY), 0)
    assert deadline.at == NOW + ZERO_TTL_GRACE
    assert not deadline.expired(NOW)
    assert deadline.expired(NOW + ZERO_TTL_GRACE)
    assert deadline.remaining_ttl(NOW) == 0  # "now or never", as the publisher asked


@given(
    ttl=st.integers(0, 40 * 24 * 3600),
    window=st.floats(1, 40 * DAY),
    age=st.one_of(st.none(), st.floats(-MAX_CLOCK_SKEW, MAX_AGE)),
)
def test_a_deadline_is_never_later_than_now_plus_the_window_or_the_ttl(
    ttl: int, window: float, age: float | None
) -> None:
    published = None if age is None else NOW - age
    deadline = first_deadline(NOW, published, ttl, window)
    assert deadline <= NOW + max(min(ttl, window), ZERO_TTL_GRACE)


# --- Deadline ------------------------------------------------------------------------------


def test_expired_at_the_deadline_and_not_a_moment_before() -> None:
    deadline = Deadline(NOW + 60, 60)
    assert not deadline.expired(NOW + 59.999)
    assert deadline.expired(NOW + 60)
    assert deadline.expired(NOW + 61)


@pytest.mark.parametrize(
    ("elapsed", "ttl_header"),
    [
        (0.0, 3600),  # sent at once: the TTL the publisher gave
        (0.4, 3600),  # rounded, not floored
        (600.0, 3000),  # a retry 10 minutes later: 50 minutes left
        (3599.4, 1),
        (3599.6, 0),
        (3600.0, 0),
        (4000.0, 0),  # never negative
    ],
)
def test_the_ttl_header_is_what_is_left(elapsed: float, ttl_header: int) -> None:
    assert Deadline(NOW + 3600, 3600).remaining_ttl(NOW + elapsed) == ttl_header


def test_the_ttl_header_never_exceeds_the_publishers_ttl() -> None:
    # A deadline that is later than the TTL (the publisher's clock ran behind ours).
    assert Deadline(NOW + 5000, 3600).remaining_ttl(NOW) == 3600


def test_iso_round_trip_keeps_milliseconds_in_utc() -> None:
    epoch = NOW + 0.123
    text = to_iso(epoch)
    assert text == "2027-01-15T08:00:00.123Z"
    assert from_iso(text) == pytest.approx(epoch, abs=0.0005)
    assert Deadline(epoch, 60).iso() == text


def test_from_iso_reads_an_offset_other_than_z() -> None:
    assert from_iso("2027-01-15T09:00:00.000+01:00") == NOW
