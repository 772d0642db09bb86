"""Reading configuration text: the `.env` file format and typed, validated values.

Every error names the variable; URLs are shown with their credentials masked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from push_service.errors import ConfigError

T = TypeVar("T")
_INLINE_COMMENT = re.compile(r"\s+#")
_QUOTED_WITH_COMMENT = re.compile(r"^(['\"])(.*?)\1\s+#.*$", re.DOTALL)
_QUOTED = re.compile(r"^(['\"])(.*)\1$", re.DOTALL)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def redact_url(url: str) -> str:
    """Mask the password (and user name) of a URL so it can be logged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]  # keeps IPv6 brackets and the port as written
    return urlunsplit((parts.scheme, f"***:***@{host}", parts.path, parts.query, ""))


def scheme(url: str) -> str:
    """The scheme of a URL that parses (port included), else "": fail at start-up, not later."""
    try:
        port = urlsplit(url).port
    except ValueError:
        return ""
    return "" if port == 0 else urlsplit(url).scheme


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a `.env` file: KEY=VALUE lines, `#` comments, optional quotes."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE")
        value = value.strip()
        quoted = _QUOTED_WITH_COMMENT.match(value) or _QUOTED.match(value)
        if quoted:  # a quoted value may be followed by a comment: VAR="x"  # note
            value = quoted.group(2)
        else:
            # Unquoted values may carry a trailing comment, as in .env.example.
            value = "" if value.startswith("#") else _INLINE_COMMENT.split(value, maxsplit=1)[0]
        values[key.strip()] = value.replace("\\n", "\n")
    return values


class Env:
    """Typed reads from a mapping; every error names the variable."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values

    def text(self, name: str, default: str = "") -> str:
        return self.values.get(name, default).strip()

    def _cast(self, name: str, default: T, cast: Callable[[str], T], kind: str) -> T:
        raw = self.text(name)
        if raw == "":
            return default
        try:
            return cast(raw)
        except ValueError:
            raise ConfigError(f"{name} must be {kind}, got {raw!r}") from None

    def integer(self, name: str, default: int, minimum: int = 0, maximum: int = 2**31) -> int:
        value = self._cast(name, default, int, "an integer")
        if not minimum <= value <= maximum:
            raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
        return value

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        value = self._cast(name, default, float, "a number")
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value}")
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.text(name).lower()
        if raw == "":
            return default
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")

    def items(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        if name not in self.values:
            return default
        return tuple(item.strip() for item in self.values[name].split(",") if item.strip())

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default).lower() or default
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def url(self, name: str, default: str, schemes: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value and scheme(value) not in schemes:
            shown = redact_url(value)
            raise ConfigError(f"{name} must be a valid {'/'.join(schemes)} URL, got {shown!r}")
        return value
