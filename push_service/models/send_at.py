"""A message's `send_at`: when it may be pushed, as epoch seconds, and its bounds.

Written either as ISO-8601 with an offset (`2025-01-31T09:00:00+01:00`, `...Z`) or as
epoch seconds. A time without an offset is refused: whose local time would it be?
The bounds are checked against a reference time given by the caller (the publish
time for a queue message, now for `POST /notifications`), never the time a copy
comes back from its delay queue, so a message is refused the same way on every hop.
"""

from __future__ import annotations

import datetime

from push_service.errors import ValidationError

CODE = "invalid_send_at"
# A send_at this far behind the reference is a mistake (or a stale message), not "now".
MAX_PAST_SECONDS = 60.0


def send_at_seconds(value: str | float) -> float:
    """Epoch seconds of a `send_at` as the message gives it; ValidationError if unreadable."""
    if not isinstance(value, str):
        return float(value)
    try:
        moment = datetime.datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise ValidationError(
            CODE, f"send_at {value[:64]!r} is not an ISO-8601 date-time"
        ) from None
    if moment.tzinfo is None:
        raise ValidationError(CODE, "send_at needs an offset (such as Z or +01:00)")
    return moment.timestamp()


def check_send_at(send_at: float, reference: float, max_days: float) -> None:
    """Raise ValidationError when `send_at` is too far ahead of `reference` or behind it."""
    if send_at > reference + max_days * 86400:
        raise ValidationError(
            CODE, f"send_at is more than {max_days:g} days ahead (SCHEDULE_MAX_DAYS)"
        )
    if send_at < reference - MAX_PAST_SECONDS:
        raise ValidationError(CODE, f"send_at is more than {MAX_PAST_SECONDS:g} s in the past")
