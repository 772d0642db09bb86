"""AMQP timestamps that Python cannot represent must not take the connection down.

pamqp decodes the 64-bit `timestamp` property (and timestamps inside header tables)
into a `datetime` while it unmarshals the frame. A value beyond the year 9999, as a
peer writing microseconds or garbage produces, raises there; aiormq then closes the
whole connection, the broker redelivers the message on the next one, and consuming
never gets past it. Installed once at start-up, `install()` makes such a value decode
as absent (None): the message is then handled like one without a timestamp.
"""

from __future__ import annotations

import datetime

from pamqp import decode

_TIMESTAMP_BYTES = 8
_original = decode.timestamp


def _tolerant_timestamp(value: bytes) -> tuple[int, datetime.datetime | None]:
    if len(value) < _TIMESTAMP_BYTES:
        return _original(value)  # a truncated frame is an error, as before
    try:
        return _original(value)
    except (ValueError, OverflowError, OSError):
        return _TIMESTAMP_BYTES, None


def install() -> None:
    """Replace pamqp's timestamp decoder for properties and tables (idempotent)."""
    decode.METHODS["timestamp"] = _tolerant_timestamp
    decode.TABLE_MAPPING[b"T"] = _tolerant_timestamp
