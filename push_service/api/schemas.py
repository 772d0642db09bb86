"""The queue message's JSON Schema, as the model that validates messages generates it,
served alone and embedded in the OpenAPI and AsyncAPI documents.

Embedded, it must not point outside the document: a code generator given only
`/openapi.json` cannot fetch `/schemas/notification.json`. So its own `$defs` (if the
generator ever leaves some) become components beside it and every reference to them
is rewritten to the component's local address.
"""

from __future__ import annotations

from typing import Any

from push_service import models

SCHEMA_ID = "/schemas/notification.json"
COMPONENTS = "#/components/schemas/"
MESSAGE_COMPONENT = "Notification"
DEFS = "#/$defs/"
Schema = dict[str, Any]


def notification_schema() -> dict[str, Any] | None:
    """The schema served at /schemas/notification.json (None if this build has no model)."""
    generate = getattr(models, "notification_json_schema", None)
    if generate is None:
        return None
    schema: dict[str, Any] = generate()
    return schema


def _relocated(value: Any) -> Any:
    """`value` with every `#/$defs/X` reference turned into `#/components/schemas/X`."""
    if isinstance(value, dict):
        ref = value.get("$ref")
        moved = {key: _relocated(item) for key, item in value.items()}
        if isinstance(ref, str) and ref.startswith(DEFS):
            moved["$ref"] = COMPONENTS + ref.removeprefix(DEFS)
        return moved
    if isinstance(value, list):
        return [_relocated(item) for item in value]
    return value


def components_of(
    schema: Schema, name: str, taken: frozenset[str] = frozenset()
) -> dict[str, Schema]:
    """`schema` as the component `name` plus its `$defs` as components beside it.

    `taken`: the names the document already uses; a definition of the same name would
    silently replace one of them, so it is an error here.
    """
    schema = {key: value for key, value in schema.items() if key != "$schema"}
    definitions: dict[str, Schema] = schema.pop("$defs", {})
    names = [name, *definitions]
    clashes = {item for item in names if item in taken or names.count(item) > 1}
    if clashes:
        raise ValueError(f"schema names used twice: {sorted(clashes)}")
    lifted = {key: _relocated(item) for key, item in definitions.items()}
    return {name: _relocated(schema), **lifted}


def notification_components(taken: frozenset[str] = frozenset()) -> dict[str, Schema]:
    """The message schema as `Notification` plus its definitions, for `components/schemas`."""
    schema = notification_schema()
    if schema is None:
        return {MESSAGE_COMPONENT: {"type": "object", "description": "No schema in this build."}}
    note = f" The same schema is served alone at {SCHEMA_ID}."
    schema["description"] = (schema.get("description", "") + note).strip()
    return components_of(schema, MESSAGE_COMPONENT, taken)
