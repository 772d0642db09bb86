"""From a msgspec error to our `ValidationError`: a stable code and a clear detail.

msgspec stops at the first problem and says where (`$.actions[0].navigate`) and
what kind (missing, wrong type, too long, not matching, out of range). Each field
has its own code and words for each kind, kept in `messages.py`; this module only
reads msgspec's answer and picks the entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

import msgspec

from push_service.errors import ValidationError
from push_service.models.bodies import without_bom

T = TypeVar("T")
Kind = Literal["missing", "null", "length", "pattern", "range", "type"]
_AT = re.compile(r" - at `\$(.*)`\Z")
_MISSING = re.compile(r"^Object missing required field `([^`]*)`")
_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True)
class FieldErrors:
    """What to say about one field; `{name}` stands for its path, e.g. `actions[1].title`."""

    code: str
    detail: str
    missing: tuple[str, str] | None = None  # absent, or null where a value is required
    length: tuple[str, str] | None = None
    pattern: tuple[str, str] | None = None
    range: tuple[str, str] | None = None

    def pick(self, kind: Kind) -> tuple[str, str]:
        chosen = {
            "missing": self.missing,
            "null": self.missing,
            "length": self.length,
            "pattern": self.pattern,
            "range": self.range,
        }.get(kind)
        return chosen or (self.code, self.detail)


def kind_of(message: str) -> Kind:
    if _MISSING.match(message):
        return "missing"
    if "got `null`" in message:
        return "null"
    if " of length " in message:
        return "length"
    if " matching regex " in message:
        return "pattern"
    if message.startswith("Expected `int` ") and ("<=" in message or ">=" in message):
        return "range"
    return "type"


def location(message: str) -> str:
    """The path of the value in error, without `$`: "", ".ttl", ".actions[0].title"."""
    at = _AT.search(message)
    path = at.group(1) if at else ""
    missing = _MISSING.match(message)
    return f"{path}.{missing.group(1)}" if missing else path


def diagnose(
    exc: msgspec.ValidationError, table: Mapping[str, FieldErrors], root: tuple[str, str]
) -> ValidationError:
    """The ValidationError for a msgspec error, by the table of the document's fields."""
    message = str(exc)
    path = location(message)
    if not path:
        return ValidationError(*root)
    key = _INDEX.sub("", path).lstrip(".")
    while key not in table and "." in key:
        key = key.rsplit(".", 1)[0]  # a member of a free-form object: blame the object
    entry = table.get(key)
    if entry is None:
        return ValidationError(root[0], f"{path.lstrip('.')}: {message}")
    code, detail = entry.pick(kind_of(message))
    return ValidationError(code, detail.replace("{name}", path.lstrip(".")))


def decode(
    body: bytes | msgspec.Raw,
    decoder: msgspec.json.Decoder[T],
    table: Mapping[str, FieldErrors],
    root: tuple[str, str],
) -> T:
    """Decode and validate `body`; raises ValidationError. A UTF-8 BOM is ignored."""
    if isinstance(body, bytes):
        body = without_bom(body)
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise diagnose(exc, table, root) from None
    except msgspec.DecodeError as exc:
        raise ValidationError("invalid_json", f"body is not valid JSON: {exc}") from None
