"""The JSON Schema of the queue message, generated from the Structs that validate it.

One source: the field types, limits and patterns come from `wire.NotificationMessage`
(msgspec writes them), the rules across fields from `constraints.RULES`. What JSON
Schema cannot say is written in the descriptions: a key must be a point on P-256,
the endpoint allowlist, distinct action names, the service's own defaults and limits
(PUSH_PAYLOAD_FORMAT, MAX_DEVICES_PER_MESSAGE, MAX_MESSAGE_BYTES), and that a device
breaking its rules fails alone while the message is still accepted.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from push_service.models import wire
from push_service.models.constraints import RULES
from push_service.models.rules import MAX_PLAINTEXT_BYTES

DIALECT = "https://json-schema.org/draft/2020-12/schema"
REF = wire.DEFS
TITLE = "push_service queue message"
DESCRIPTION = (
    "A notification request, published as JSON to the service's queue (or sent to"
    " POST /notifications). A message this schema accepts can still be refused by the"
    " service for what JSON Schema cannot express: more devices than"
    " MAX_DEVICES_PER_MESSAGE, a body over MAX_MESSAGE_BYTES, or no action_url when the"
    " service's PUSH_PAYLOAD_FORMAT is declarative and the message does not say. Other"
    " members are ignored. A UTF-8 byte order mark before the JSON is ignored. Each"
    " device is checked on its own (key on the curve, endpoint allowed): one that fails"
    " is recorded failed alone and the others are still pushed. A push whose payload"
    f" exceeds {MAX_PLAINTEXT_BYTES} bytes fails with reason payload_too_large."
)


def _inline(value: Any, defs: dict[str, Any]) -> Any:
    """`value` with every `{"$ref": "#/$defs/X"}` replaced by X itself (none is recursive).

    Self-contained, the schema means the same wherever it is embedded: the OpenAPI
    document inlines it, and a "#/$defs/..." reference would then point into that document.
    """
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF):
            return _inline(defs[ref.removeprefix(REF)], defs)
        return {key: _inline(item, defs) for key, item in value.items()}
    if isinstance(value, list):
        return [_inline(item, defs) for item in value]
    return value


@functools.cache
def _schema_json() -> bytes:
    _, defs = msgspec.json.schema_components(
        (wire.NotificationMessage, wire.DeviceSubscription), ref_template=REF + "{name}"
    )
    message = defs.pop("NotificationMessage")
    message.update(title=TITLE, description=DESCRIPTION)
    schema = {
        "$schema": DIALECT,
        **_inline(message, defs),
        "allOf": [rule.schema() for rule in RULES],
        # Either devices or an audience, never both; an audience names one user or topic.
        "oneOf": [{"required": ["devices"]}, {"required": ["audience"]}],
    }
    audience = schema["properties"]["audience"]
    audience["oneOf"] = [{"required": ["user_id"]}, {"required": ["topic"]}]
    audience["minProperties"] = 1
    return msgspec.json.encode(schema)


def notification_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the queue message; a fresh copy on each call."""
    schema: dict[str, Any] = msgspec.json.decode(_schema_json())
    return schema
