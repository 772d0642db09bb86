"""A registered subscription as the registry keeps it, and its Redis hash fields.

The field names are the documented layout (README "Subscription registry"): peer
services may read a subscription with `HGETALL {prefix}sub:{device}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from push_service.models import device_key


@dataclass(frozen=True, slots=True)
class Subscription:
    """A browser's push subscription, and what the service knows about it."""

    endpoint: str
    p256dh: str  # base64url, as the subscription gave them
    auth: str
    user_id: str | None = None  # a verified user only: a claimed one is never kept
    topics: tuple[str, ...] = ()
    key_id: str = "default"  # the VAPID key it was made with
    expiration_time: float | None = None  # the browser's expirationTime (epoch ms)
    created_at: str = ""  # set by the registry
    last_seen: str = ""

    @property
    def device(self) -> str:
        return device_key(self.endpoint)

    def message_device(self) -> dict[str, Any]:
        """This subscription as a device of a queue message."""
        return {
            "endpoint": self.endpoint,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
            "vapid_key_id": self.key_id,
        }

    def to_fields(self) -> dict[str, str]:
        return {
            "endpoint": self.endpoint,
            "p256dh": self.p256dh,
            "auth": self.auth,
            "user_id": self.user_id or "",
            "topics": orjson.dumps(list(self.topics)).decode(),
            "key_id": self.key_id,
            "expiration_time": "" if self.expiration_time is None else repr(self.expiration_time),
            "created_at": self.created_at,
            "last_seen": self.last_seen,
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Subscription | None:
        """The subscription a hash holds; None for a hash that is not one (partial, foreign)."""
        try:
            topics = orjson.loads(fields.get("topics") or "[]")
            expires = fields.get("expiration_time") or ""
            return cls(
                endpoint=fields["endpoint"],
                p256dh=fields["p256dh"],
                auth=fields["auth"],
                user_id=fields.get("user_id") or None,
                topics=tuple(str(topic) for topic in topics),
                key_id=fields.get("key_id") or "default",
                expiration_time=float(expires) if expires else None,
                created_at=fields.get("created_at", ""),
                last_seen=fields.get("last_seen", ""),
            )
        except (KeyError, ValueError, TypeError):
            return None

    def member_of(self, user_id: str | None, topic: str | None) -> bool:
        """Whether an index entry naming this subscription is still true."""
        if user_id is not None:
            return self.user_id == user_id
        return topic in self.topics


@dataclass(frozen=True, slots=True)
class Upserted:
    """What `Registry.upsert` did: the subscription as stored now, and before."""

    subscription: Subscription
    previous: Subscription | None

    @property
    def created(self) -> bool:
        return self.previous is None

    @property
    def same(self) -> bool:
        """Keys, user and topics as they were: the page re-sent what it had (a re-sync)."""
        before, now = self.previous, self.subscription
        return before is not None and (
            (before.p256dh, before.auth, before.user_id, before.topics)
            == (now.p256dh, now.auth, now.user_id, now.topics)
        )
