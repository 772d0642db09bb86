"""docs/asyncapi.yaml: the queue, its dead-letter queue and the message, as peers read it;
its example is a message the consumer's own validation accepts."""

from __future__ import annotations

from typing import Any

import orjson
import yaml

from push_service.api.openapi_schemas import NOTIFICATION_SCHEMA_URL
from push_service.broker import USER_VERIFIED_HEADER
from push_service.config import Settings
from push_service.endpoints import EndpointPolicy
from push_service.models import parse_notification
from tests.support import ROOT

DOCUMENT = ROOT / "docs/asyncapi.yaml"


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


def test_describes_the_queue_the_dead_letter_queue_and_the_headers() -> None:
    doc = document()
    settings = Settings()

    assert doc["asyncapi"].startswith("3.")
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert addresses == {settings.rabbitmq_queue_name, settings.dead_letter_queue}
    message = doc["components"]["messages"]["notification"]
    assert message["payload"]["schema"]["$ref"].endswith(NOTIFICATION_SCHEMA_URL)
    assert USER_VERIFIED_HEADER in message["headers"]["properties"]
    dead = doc["components"]["messages"]["deadLetter"]["headers"]["properties"]
    assert {"x-death-reason", "x-original-queue", "x-notification-id"} <= set(dead)
    for operation in doc["operations"].values():
        channel = operation["channel"]["$ref"].removeprefix("#/channels/")
        assert channel in doc["channels"]


def test_its_example_is_accepted_by_the_consumer_validation() -> None:
    policy = EndpointPolicy(Settings().push_endpoint_allowlist, allow_http=False)
    for example in document()["components"]["messages"]["notification"]["examples"]:
        notification = parse_notification(orjson.dumps(example["payload"]), policy)
        assert notification.rejected == (), notification.rejected
        assert len(notification.devices) == len(example["payload"]["devices"])
