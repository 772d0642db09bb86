"""Error codes and words, per field of each document (see `diagnose.FieldErrors`).

The codes are stable (they go to the DLQ's `x-death-reason`, the status record and
HTTP 422 bodies); the words say what a valid value looks like.
"""

from __future__ import annotations

from push_service.models.diagnose import FieldErrors
from push_service.models.rules import (
    MAX_ACTION_NAME,
    MAX_ACTION_TITLE,
    MAX_ACTIONS,
    MAX_BODY,
    MAX_TAG,
    MAX_TITLE,
    MAX_TOPICS,
    MAX_TTL_SECONDS,
    MAX_URL,
    MAX_USER_ID,
    MAX_VIBRATE_ENTRIES,
    UINT32_MAX,
)

NOT_AN_OBJECT = ("invalid_json", "body must be a JSON object")
_URL_LENGTH = ("invalid_field", f"{{name}} must be a URL of at most {MAX_URL} characters")
_INT64 = "an integer from 0 to 9223372036854775807"


def _text(name: str, limit: int) -> FieldErrors:
    return FieldErrors(
        "invalid_field",
        f"{name} must be a string",
        length=("field_too_long", f"{name} must be at most {limit} characters"),
    )


def _http_url() -> FieldErrors:
    return FieldErrors(*_URL_LENGTH, pattern=("invalid_field", "{name} must be an http(s) URL"))


def _image_url() -> FieldErrors:
    relative = "{name} must be an http(s) URL or a URL relative to the page"
    return FieldErrors(*_URL_LENGTH, pattern=("invalid_field", relative))


def _flag() -> FieldErrors:
    return FieldErrors("invalid_field", "{name} must be true or false")


def _required(errors: FieldErrors) -> FieldErrors:
    return FieldErrors(
        errors.code,
        errors.detail,
        missing=("missing_field", "{name} is required"),
        length=errors.length,
        pattern=errors.pattern,
        range=errors.range,
    )


USER_ID = FieldErrors(
    "invalid_user_id",
    "user_id must be a string or an integer",
    length=("invalid_user_id", f"user_id must be 1 to {MAX_USER_ID} characters"),
    range=("invalid_user_id", "user_id must be an integer that fits in 64 bits"),
)

DEVICE = {
    "endpoint": FieldErrors("invalid_endpoint", "endpoint must be a non-empty string"),
    "keys": FieldErrors("invalid_keys", "keys must be an object with p256dh and auth"),
    "keys.p256dh": FieldErrors("invalid_keys", "keys.p256dh must be a base64url string"),
    "keys.auth": FieldErrors("invalid_keys", "keys.auth must be a base64url string"),
    "vapid_key_id": FieldErrors(
        "unknown_vapid_key", "vapid_key_id must be 1 to 32 letters, digits and _.-"
    ),
}
DEVICE_ROOT = ("invalid_subscription", "subscription must be an object")

SUBSCRIBE = {
    **DEVICE,
    "expirationTime": FieldErrors(
        "invalid_subscription", "expirationTime must be null or a number"
    ),
    "user_id": USER_ID,
    "old_endpoint": FieldErrors(
        "invalid_field",
        "old_endpoint must be the URL of the replaced subscription",
        length=("invalid_field", f"old_endpoint must be a URL of at most {MAX_URL} characters"),
    ),
    "old_keys": FieldErrors("invalid_field", "old_keys must be an object with auth"),
    "old_keys.auth": _required(
        FieldErrors("invalid_field", "old_keys.auth must be a base64url string")
    ),
    "topics": FieldErrors(
        "invalid_topics",
        "topics must be a list of names of 1 to 64 letters, digits and _.:-",
        length=("invalid_topics", f"at most {MAX_TOPICS} topics"),
        pattern=("invalid_topics", "each topic must be 1 to 64 letters, digits and _.:-"),
    ),
}

UNSUBSCRIBE = {
    "endpoint": _required(
        FieldErrors("invalid_endpoint", "endpoint must be the subscription's URL")
    ),
    "keys": _required(FieldErrors("invalid_keys", "keys must be an object with auth")),
    "keys.auth": _required(FieldErrors("invalid_keys", "keys.auth must be a base64url string")),
}

_ACTIONS = (
    f"actions must be a list of at most {MAX_ACTIONS} objects with action, title,"
    " and optional navigate and icon"
)

MESSAGE = {
    "notification_id": FieldErrors(
        "invalid_notification_id",
        "notification_id must be 1 to 128 characters of letters, digits and ._:@/+=-,"
        " or a non-negative integer",
    ),
    "devices": FieldErrors("invalid_devices", "devices must be a non-empty list"),
    "audience": FieldErrors("invalid_audience", "audience must be an object with user_id or topic"),
    "audience.user_id": USER_ID,
    "audience.topic": FieldErrors(
        "invalid_audience", "audience.topic must be 1 to 64 letters, digits and _.:-"
    ),
    "title": _required(_text("title", MAX_TITLE)),
    "body": _text("body", MAX_BODY),
    "tag": _text("tag", MAX_TAG),
    "user_id": USER_ID,
    "action_url": _http_url(),
    "icon": _image_url(),
    "badge": _image_url(),
    "image": _image_url(),
    "data": FieldErrors("invalid_field", "data must be an object"),
    "ttl": FieldErrors(
        "invalid_ttl", f"ttl must be an integer from 0 to {MAX_TTL_SECONDS} seconds"
    ),
    "urgency": FieldErrors("invalid_urgency", "urgency must be one of very-low, low, normal, high"),
    "topic": FieldErrors("invalid_topic", "topic must be 1 to 64 letters, digits and _.:-"),
    "send_at": FieldErrors(
        "invalid_send_at",
        "send_at must be an ISO-8601 date-time with an offset, or epoch seconds",
    ),
    "payload_format": FieldErrors(
        "invalid_payload_format", "payload_format must be classic or declarative"
    ),
    "actions": FieldErrors(
        "invalid_field",
        _ACTIONS,
        length=("too_many_actions", f"at most {MAX_ACTIONS} actions per notification"),
    ),
    "actions.action": _required(
        FieldErrors(
            "invalid_field", f"{{name}} must be a string of 1 to {MAX_ACTION_NAME} characters"
        )
    ),
    "actions.title": _required(
        FieldErrors(
            "invalid_field", f"{{name}} must be a string of 1 to {MAX_ACTION_TITLE} characters"
        )
    ),
    "actions.navigate": _http_url(),
    "actions.icon": _image_url(),
    "lang": FieldErrors("invalid_field", "lang must be a language tag such as en or pt-BR"),
    "dir": FieldErrors("invalid_field", "dir must be one of auto, ltr, rtl"),
    "require_interaction": _flag(),
    "renotify": _flag(),
    "silent": _flag(),
    "mutable": _flag(),
    "vibrate": FieldErrors(
        "invalid_field",
        f"vibrate must be a list of at most {MAX_VIBRATE_ENTRIES} durations in milliseconds,"
        f" integers from 0 to {UINT32_MAX}",
    ),
    "timestamp": FieldErrors(
        "invalid_field", f"timestamp must be milliseconds since the epoch, {_INT64}"
    ),
    "app_badge": FieldErrors("invalid_field", f"app_badge must be {_INT64}"),
}
