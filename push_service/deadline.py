"""When a notification stops being worth sending, and the TTL a push still carries.

A notification's deadline is fixed once, when the service first sees it: the
publisher's AMQP `timestamp` (or the moment it was first consumed) plus its TTL,
capped by the retry window. Retries and parked copies inherit it from the status
record, so a push is never sent after it, and each push tells the push service only
the TTL that is left (RFC 8030 section 5.2).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

# AMQP timestamps are whole seconds: a message published at 12:00:00.9 says 12:00:00.
TIMESTAMP_RESOLUTION = 1.0
# Clocks of publishers drift; a timestamp this far ahead is the publisher's clock, not news.
MAX_CLOCK_SKEW = 300.0
# Older than the longest TTL a message may carry: a default 0 or a bad clock, not an age.
MAX_AGE = 28 * 24 * 3600.0
# TTL 0 means "now or never" (RFC 8030): one immediate attempt, no retry after it.
ZERO_TTL_GRACE = 1.0


def publisher_time(timestamp: datetime.datetime | None, now: float) -> float | None:
    """The publish time a message claims, in epoch seconds, or None if it is not plausible.

    pamqp already reads values past 2106 as milliseconds (Node's `Date.now()`), and
    `amqp_timestamps` turns unrepresentable ones into None.
    """
    if timestamp is None:
        return None
    seconds = timestamp.timestamp()
    if not now - MAX_AGE <= seconds <= now + MAX_CLOCK_SKEW:
        return None
    return seconds


def first_deadline(now: float, published: float | None, ttl: int, window: float) -> float:
    """The deadline of a notification seen for the first time (epoch seconds)."""
    start = now if published is None else min(now, published + TIMESTAMP_RESOLUTION)
    return start + max(min(float(ttl), window), ZERO_TTL_GRACE)


@dataclass(frozen=True, slots=True)
class Deadline:
    """A notification's deadline and its TTL as the publisher asked for it."""

    at: float  # epoch seconds
    ttl: int

    def expired(self, now: float) -> bool:
        return now >= self.at

    def remaining_ttl(self, now: float) -> int:
        """The `TTL` header for a push sent now: never longer than what is left."""
        # Rounded, not floored: a push sent at once carries the TTL it was given.
        return max(0, min(self.ttl, round(self.at - now)))

    def iso(self) -> str:
        return to_iso(self.at)


def to_iso(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_iso(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
