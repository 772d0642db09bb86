"""Notification status records in Redis: the store, its records and its scripts."""

from push_service.status.batch import CALL_TIMEOUT
from push_service.status.records import (
    Begun,
    DeviceOutcome,
    DeviceRetry,
    to_record,
    utc_now,
)
from push_service.status.store import RedisUnavailable, StatusStore

__all__ = [
    "CALL_TIMEOUT",
    "Begun",
    "DeviceOutcome",
    "DeviceRetry",
    "RedisUnavailable",
    "StatusStore",
    "to_record",
    "utc_now",
]
