"""Rules across fields of the queue message, checked and put in the JSON Schema alike.

Each rule is data: the consumer checks it with `broken()`, and `schema()` gives the
`if`/`then` clause that the generated JSON Schema carries, so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from push_service.errors import ValidationError
from push_service.models.wire import NotificationMessage


def _when(field: str, value: object) -> dict[str, Any]:
    return {"properties": {field: {"const": value}}, "required": [field]}


@dataclass(frozen=True)
class Rule:
    """When the field `when` is `equals`, something is asked of `field`."""

    when: str
    equals: object
    field: str
    code: str
    detail: str

    def applies(self, message: NotificationMessage) -> bool:
        return bool(getattr(message, self.when) == self.equals)


class Requires(Rule):
    """... `field` must be a non-empty string."""

    def broken(self, message: NotificationMessage) -> bool:
        return self.applies(message) and not getattr(message, self.field)

    def schema(self) -> dict[str, Any]:
        then = {"properties": {self.field: {"type": "string", "minLength": 1}}}
        return {"if": _when(self.when, self.equals), "then": {**then, "required": [self.field]}}


class Excludes(Rule):
    """... `field` must be absent (or null)."""

    def broken(self, message: NotificationMessage) -> bool:
        return self.applies(message) and getattr(message, self.field) is not None

    def schema(self) -> dict[str, Any]:
        return {
            "if": _when(self.when, self.equals),
            "then": {"properties": {self.field: {"type": "null"}}},
        }


RULES: tuple[Requires | Excludes, ...] = (
    Requires(
        "payload_format",
        "declarative",
        "action_url",
        "missing_field",
        "action_url is required for the declarative payload (it becomes notification.navigate)",
    ),
    Requires(
        "renotify",
        True,
        "tag",
        "invalid_combination",
        "renotify needs a tag: it alerts again when a notification replaces one with the same tag",
    ),
    # Browsers throw a TypeError for both together (Notifications API, "create a notification").
    Excludes(
        "silent", True, "vibrate", "invalid_combination", "silent and vibrate exclude each other"
    ),
)


def check(message: NotificationMessage) -> None:
    """Raise ValidationError for the first broken rule (`payload_format` already defaulted)."""
    for rule in RULES:
        if rule.broken(message):
            raise ValidationError(rule.code, rule.detail)
    names = [action.action for action in message.actions or ()]
    if len(set(names)) != len(names):
        # A click reports only the action's name: two alike could not be told apart.
        raise ValidationError("invalid_field", "actions must have distinct action names")
