"""Notification status records in Redis: the store, its records and its scripts."""

from push_service.status.batch import CALL_TIMEOUT
from push_service.status.records import (
    Begun,
    DeviceOutcome,
    DeviceRetry,
    to_record,
    utc_now,
)
from push_service.status.store import MAX_CONNECTIONS, RedisUnavailable, StatusStore, connect

__all__ = [
    "CALL_TIMEOUT",
    "MAX_CONNECTIONS",
    "Begun",
    "DeviceOutcome",
    "DeviceRetry",
    "RedisUnavailable",
    "StatusStore",
    "connect",
    "to_record",
    "utc_now",
]
