"""A report to the User Service, as it waits in RabbitMQ and as it is posted.

Two kinds: a `deactivation` (a subscription gone, or unsubscribed) and a
`registration` (a new or replaced subscription of a verified user). A report's
`report_id` is derived from what it is about, so the same fact reported twice (a
redelivered push that meets the same 410, a page that re-sends its unsubscribe) has
the same id and the User Service can drop the duplicate.

`record` names the status record and device a deactivation came from: the relay
writes its outcome there. It is not part of what the User Service is sent.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from push_service.status import utc_now

Kind = Literal["deactivation", "registration"]
KINDS: tuple[Kind, ...] = ("deactivation", "registration")


def report_id(kind: Kind, *parts: str | None) -> str:
    """A stable id for one fact: the same parts give the same id."""
    digest = hashlib.sha256(kind.encode())
    for part in parts:
        digest.update(b"\0" + (part or "").encode())
    return digest.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Report:
    kind: Kind
    body: dict[str, Any]  # what the User Service receives, `report_id` included
    created: float  # epoch seconds; the report is given up USER_SERVICE_REPORT_MAX_AGE after
    notification_id: str | None = None
    device: str | None = None

    @property
    def report_id(self) -> str:
        return str(self.body["report_id"])

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "kind": self.kind,
                "body": self.body,
                "created": self.created,
                "notification_id": self.notification_id,
                "device": self.device,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Report:
        """Raises ValueError for anything that is not a report this service wrote."""
        try:
            data = orjson.loads(raw)
            kind = data["kind"]
            body = data["body"]
            if kind not in KINDS or not isinstance(body, dict) or "report_id" not in body:
                raise ValueError("not a report")
            return cls(
                kind,
                body,
                float(data["created"]),
                data.get("notification_id"),
                data.get("device"),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"not a report: {type(exc).__name__}") from None


def deactivation(
    *,
    user_id: str | None,
    endpoint: str,
    reason: str,
    status_code: int | None,
    notification_id: str | None = None,
    device: str | None = None,
) -> Report:
    """A subscription to deactivate: gone (404/410), a key mismatch, or unsubscribed."""
    body = {
        "report_id": report_id("deactivation", endpoint, reason, notification_id),
        "user_id": user_id,
        "endpoint": endpoint,
        "reason": reason,
        "status_code": status_code,
    }
    return Report("deactivation", body, time.time(), notification_id, device)


def registration(
    *,
    user_id: str,
    endpoint: str,
    keys: dict[str, str],
    expiration_time: float | None,
    replaces: str | None,
) -> Report:
    """A verified user's new subscription, or the one that replaces `replaces`."""
    body = {
        "report_id": report_id(
            "registration", user_id, endpoint, keys.get("p256dh"), keys.get("auth"), replaces
        ),
        "user_id": user_id,
        "endpoint": endpoint,
        "keys": keys,
        "expiration_time": expiration_time,
        "subscribed_at": utc_now(),
        "replaces": replaces,
    }
    return Report("registration", body, time.time())
