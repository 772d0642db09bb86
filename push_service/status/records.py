"""What a status record holds per device, and the record as peers read it.

The JSON written per device is the documented Redis layout (README "Status record"):
peers read it with `HGETALL`, so field names here are part of the interface.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from push_service.deadline import from_iso, to_iso

DEVICE_FIELDS = ("d:", "r:", "x:")  # final outcome, waiting for a retry, dead-lettered
ANSWER_FIELD = "u:"  # the User Service's answer to a device's report
RECEIPT_FIELD = "e:"  # a browser's receipts of a device: {"delivered_at", "clicked_at", ...}
COUNTS = ("sent", "failed", "devices_total", "refused_messages", "cancelled", "fanout_chunks")
RECEIPT_COUNTS = ("delivered", "clicked", "closed")


_now_cache: list[Any] = [0, ""]  # the last millisecond formatted, and its text


def utc_now() -> str:
    """ISO-8601 UTC to the millisecond; formatted once per millisecond (many calls share it)."""
    ms = time.time_ns() // 1_000_000
    if ms != _now_cache[0]:
        moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
        _now_cache[:] = [ms, moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")]
    text: str = _now_cache[1]
    return text


@dataclass(frozen=True, slots=True)
class DeviceOutcome:
    """The final outcome of one device for one notification."""

    device: str
    endpoint: str
    status: str  # "sent" | "failed"
    http_status: int | None
    reason: str | None
    attempts: int
    detail: str | None = None
    deactivation: str | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "device": self.device,
                "endpoint": self.endpoint,
                "status": self.status,
                "http_status": self.http_status,
                "reason": self.reason,
                "detail": self.detail,
                "attempts": self.attempts,
                "deactivation": self.deactivation,
                "at": utc_now(),
            }
        )


@dataclass(frozen=True, slots=True)
class DeviceRetry:
    """A device whose push failed for now and waits, parked, until `not_before`.

    `reason` says why it waits (`retry_after`, `backoff`, `circuit_open`, `busy`);
    `last_error` and `http_status` describe the last request, if one was made.
    """

    device: str
    endpoint: str
    not_before: float  # epoch seconds
    attempts: int
    reason: str
    last_error: str | None = None
    http_status: int | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "device": self.device,
                "endpoint": self.endpoint,
                "status": "retrying",
                "http_status": self.http_status,
                "reason": self.reason,
                "last_error": self.last_error,
                "attempts": self.attempts,
                "next_attempt_at": to_iso(self.not_before),
                "at": utc_now(),
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> DeviceRetry:
        data = orjson.loads(raw)
        return cls(
            device=data["device"],
            endpoint=data["endpoint"],
            not_before=from_iso(data["next_attempt_at"]),
            attempts=int(data["attempts"]),
            reason=data["reason"],
            last_error=data.get("last_error"),
            http_status=data.get("http_status"),
        )


@dataclass(frozen=True, slots=True)
class Begun:
    """What `StatusStore.begin` found: the deadline, and the devices already handled."""

    new: bool
    deadline: float  # epoch seconds
    done: frozenset[str] = frozenset()
    retrying: dict[str, DeviceRetry] = field(default_factory=dict)
    cancelled: bool = False  # DELETE /notifications/{id}: push none of the devices left
    held: bool = False  # the retries given to `begin` were written with the new record


def to_record(raw: dict[str, str]) -> dict[str, Any]:
    """The hash as the JSON record `GET /notifications/{id}` serves."""
    record: dict[str, Any] = {}
    devices: dict[str, dict[str, Any]] = {}
    answers: dict[str, str] = {}
    receipts: dict[str, dict[str, Any]] = {}
    for name, value in raw.items():
        if name[:2] == ANSWER_FIELD:
            answers[name[2:]] = value
        elif name[:2] == RECEIPT_FIELD:
            receipts[name[2:]] = orjson.loads(value)
        elif name[:2] in DEVICE_FIELDS:
            device = orjson.loads(value)
            # A final outcome wins over a retrying entry left by a crash in between.
            if name[:2] == "d:" or name[2:] not in devices:
                devices[name[2:]] = device
        elif name in COUNTS or name in RECEIPT_COUNTS:
            record[name] = int(value)
        elif name == "user_verified":
            record[name] = value == "true"
        elif name != "fingerprint":
            record[name] = value or None
    for device_id, answer in answers.items():
        if device_id in devices:  # the User Service's answer may be written before the outcome
            devices[device_id]["deactivation"] = answer
    for device_id, seen in receipts.items():
        if device_id in devices:  # a receipt may arrive before the outcome is written
            devices[device_id]["receipts"] = seen
    record["devices"] = sorted(devices.values(), key=lambda d: d.get("at", ""))
    return record
