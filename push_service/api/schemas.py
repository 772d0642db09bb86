"""The queue message's JSON Schema, as the model that validates messages generates it."""

from __future__ import annotations

from typing import Any

from push_service import models

SCHEMA_ID = "/schemas/notification.json"


def notification_schema() -> dict[str, Any] | None:
    """The schema served at /schemas/notification.json (None if this build has no model)."""
    generate = getattr(models, "notification_json_schema", None)
    if generate is None:
        return None
    schema: dict[str, Any] = generate()
    return schema
