"""What the browser decrypts: the classic JSON, or a W3C declarative push message.

classic      `{"notification_id", "title", "body", "action_url", ...}`: the message's
             display fields under their queue-message names, for a service worker
             that knows them (today's format, the default).
declarative  `{"web_push": 8030, "notification": {"title", "navigate", ...},
             "app_badge", "mutable"}` (W3C Push API, "declarative push message"),
             members spelled as the specification does (`requireInteraction`), the
             `notification_id` in `notification.data`. Browsers that implement it show
             it without a service worker; others hand it to the `push` handler.
"""

from __future__ import annotations

from typing import Any

import msgspec

from push_service.models.wire import NotificationAction, NotificationMessage

DECLARATIVE_PUSH = 8030  # the `web_push` magic number of the specification
# Optional display fields, in the order they are written; (queue name, declarative name).
_DISPLAY = (
    ("icon", "icon"),
    ("badge", "badge"),
    ("image", "image"),
    ("tag", "tag"),
    ("lang", "lang"),
    ("dir", "dir"),
    ("require_interaction", "requireInteraction"),
    ("renotify", "renotify"),
    ("silent", "silent"),
    ("vibrate", "vibrate"),
    ("timestamp", "timestamp"),
)
_encoder = msgspec.json.Encoder()


def build_payload(message: NotificationMessage, notification_id: str) -> bytes:
    """The plaintext of every push of this message (`payload_format` already defaulted)."""
    if message.payload_format == "declarative":
        return _encoder.encode(declarative(message, notification_id))
    return _encoder.encode(classic(message, notification_id))


def _action(action: NotificationAction, navigate: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"action": action.action, "title": action.title}
    if navigate is not None:
        item["navigate"] = navigate
    if action.icon is not None:
        item["icon"] = action.icon
    return item


def classic(message: NotificationMessage, notification_id: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "notification_id": notification_id,
        "title": message.title,
        "body": message.body or "",
        "action_url": message.action_url,
    }
    for name, _ in _DISPLAY:
        if (value := getattr(message, name)) is not None:
            payload[name] = value
    for name in ("app_badge", "mutable", "data"):
        if (value := getattr(message, name)) is not None:
            payload[name] = value
    if message.actions is not None:
        payload["actions"] = [_action(a, a.navigate) for a in message.actions]
    return payload


def declarative(message: NotificationMessage, notification_id: str) -> dict[str, Any]:
    navigate = message.action_url  # required for this format (constraints.RULES)
    notification: dict[str, Any] = {
        "title": message.title,
        "navigate": navigate,
        "body": message.body or "",
    }
    for name, spelled in _DISPLAY:
        if (value := getattr(message, name)) is not None:
            notification[spelled] = value
    notification["data"] = {**(message.data or {}), "notification_id": notification_id}
    if message.actions is not None:
        # The specification requires each action's own URL; ours default to the notification's.
        notification["actions"] = [_action(a, a.navigate or navigate) for a in message.actions]
    payload: dict[str, Any] = {"web_push": DECLARATIVE_PUSH, "notification": notification}
    if message.app_badge is not None:
        payload["app_badge"] = message.app_badge
    if message.mutable is not None:
        payload["mutable"] = message.mutable
    return payload
