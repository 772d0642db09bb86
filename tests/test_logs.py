"""JSON logging: one object per line, context extras, secrets scrubbed everywhere."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from push_service.logs import JsonFormatter, configure_logging

SECRET = "s3cr3t-vapid-private-key-value"


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter([SECRET, "short"]))
    logger = logging.getLogger("tests.logs.capture")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, stream
    logger.handlers[:] = []


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_one_json_object_per_line_with_level_event_and_extras(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    logger.info("pushed %d devices", 3, extra={"notification_id": "n-1", "duration_ms": 12.5})
    logger.warning("multi\nline\nmessage", extra={"unrelated": "dropped"})
    first, second = lines(stream)
    assert first["level"] == "info"
    assert first["event"] == "pushed 3 devices"
    assert first["logger"] == "tests.logs.capture"
    assert first["notification_id"] == "n-1" and first["duration_ms"] == 12.5
    assert str(first["ts"]).endswith("Z")
    assert second["level"] == "warning"
    assert second["event"] == "multi\nline\nmessage"  # escaped inside one line
    assert "unrelated" not in second


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("connect amqp://user:hunter22@broker:5672/vh failed", "hunter22"),
        ("redis://:redispass@127.0.0.1:6379/0 down", "redispass"),
        ("amqp://user:p@ssw0rd@host/ refused", "ssw0rd"),
        ("amqps://admin:pw@[::1]:5671/", "admin:pw"),
        ("https://svc:token@users.example/api", "svc:token"),
        (f"key is {SECRET}!", SECRET),
    ],
)
def test_credentials_and_secrets_are_scrubbed(
    capture: tuple[logging.Logger, io.StringIO], text: str, leaked: str
) -> None:
    logger, stream = capture
    logger.error(text)
    (entry,) = lines(stream)
    assert leaked not in stream.getvalue()
    assert "***" in str(entry["event"])


def test_plain_urls_and_short_secrets_are_left_alone(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    logger.info("push to https://fcm.googleapis.com/fcm/send/x short mail ops@example.com")
    (entry,) = lines(stream)
    assert entry["event"] == (
        "push to https://fcm.googleapis.com/fcm/send/x short mail ops@example.com"
    )


def test_exception_tracebacks_are_scrubbed(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    try:
        raise ConnectionError(f"amqp://guest:topsecretpw@10.0.0.1/ rejected key {SECRET}")
    except ConnectionError:
        logger.exception("broker failure")
    (entry,) = lines(stream)
    assert "Traceback" in str(entry["error"]) and "ConnectionError" in str(entry["error"])
    assert "topsecretpw" not in stream.getvalue()
    assert SECRET not in stream.getvalue()


def test_extras_are_scrubbed_too(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    logger.info("failed", extra={"reason": f"http://u:leakedpw@users/ said {SECRET}"})
    (entry,) = lines(stream)
    assert "leakedpw" not in stream.getvalue() and SECRET not in stream.getvalue()
    assert str(entry["reason"]).startswith("http://***@users/")


def test_configure_logging_routes_root_through_the_formatter() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        configure_logging("WARNING", debug=False, secrets=[SECRET])
        assert root.level == logging.WARNING
        (handler,) = root.handlers
        assert isinstance(handler.formatter, JsonFormatter)
        assert handler.formatter.secrets == [SECRET]
        assert logging.getLogger("aiormq").level == logging.WARNING
        configure_logging("INFO", debug=True)
        assert root.level == logging.DEBUG
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for name in ("aiormq", "asyncio", "hypercorn.access"):
            logging.getLogger(name).setLevel(logging.NOTSET)
