"""Logging: one JSON object per line, with secrets scrubbed from every record."""

from __future__ import annotations

import datetime
import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

import orjson

# Up to the last `@` of the authority, as URL parsers read it: a password may contain `@`.
_URL_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s'\"]+@")
# Context fields a record may carry via `extra=`; everything else stays out of the line.
FIELDS = ("notification_id", "user_id", "endpoint_origin", "duration_ms", "status", "reason")


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 8]

    def scrub(self, text: str) -> str:
        """Remove URL credentials and known secret values from a log text."""
        text = _URL_CREDENTIALS.sub(r"\1***@", text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": self.scrub(record.getMessage()),
        }
        for field in FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = self.scrub(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["error"] = self.scrub(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str, debug: bool, secrets: Iterable[str] = ()) -> JsonFormatter:
    """Route all logging (ours, hypercorn's, aiormq's) through the JSON formatter."""
    formatter = JsonFormatter(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else level)
    # Library chatter stays at INFO even in debug mode: aiormq logs every frame.
    for noisy in ("aiormq", "asyncio", "hypercorn.access"):
        logging.getLogger(noisy).setLevel(logging.INFO if debug else logging.WARNING)
    for name in ("hypercorn.error",):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    return formatter
