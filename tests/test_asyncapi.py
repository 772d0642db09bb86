"""The AsyncAPI 3.0 document (push_service.api.asyncapi, served at /asyncapi.json, and
docs/asyncapi.yaml for the default settings): valid against the AsyncAPI 3.0.0 JSON
Schema (npm @asyncapi/specs, `make test` installs it into tests/asyncapi/),
self-contained, addressed from the settings; the event schemas accept the examples and
refuse an event carrying an endpoint URL; the queue example passes the consumer's checks.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator
from write_asyncapi import TARGET, render

from push_service.api.asyncapi import Addresses, asyncapi_document
from push_service.api.event_schemas import (
    EVENT_NAMES,
    NOTIFICATION_COMPLETED,
    event_examples,
    event_schemas,
)
from push_service.api.schemas import notification_schema
from push_service.broker import USER_VERIFIED_HEADER
from push_service.config import Settings
from push_service.endpoints import EndpointPolicy
from push_service.events import EXCHANGE_TYPE
from push_service.models import parse_notification
from tests.conftest import ServiceFactory
from tests.document_refs import assert_self_contained, pointed, refs
from tests.support import ROOT, call

SPECS = ROOT / "tests/asyncapi/node_modules/@asyncapi/specs/schemas/3.0.0-without-$id.json"
DEFAULT = Addresses.of(Settings())


def spec_validator() -> Draft7Validator:
    if not SPECS.is_file():
        pytest.fail(f"{SPECS} is missing: run `make test` (or npm ci --prefix tests/asyncapi)")
    return Draft7Validator(json.loads(SPECS.read_text(encoding="utf-8")))


def problems(document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}"
        for error in spec_validator().iter_errors(document)
    ]


@pytest.mark.parametrize("exchange", ["push.events", ""])
def test_valid_asyncapi_3_0_and_self_contained(exchange: str) -> None:
    document = asyncapi_document(Addresses("q.main", "q.main.dlq", exchange))

    assert problems(document) == []
    assert assert_self_contained(document) >= (20 if exchange else 6)


def test_the_spec_schema_catches_mistakes() -> None:
    document = asyncapi_document(DEFAULT)
    wrong_action = copy.deepcopy(document)
    wrong_action["operations"]["sendEvent"]["action"] = "publish"  # AsyncAPI 2 wording
    wrong_binding = copy.deepcopy(document)
    wrong_binding["channels"]["events"]["bindings"]["amqp"]["exchange"]["type"] = "round-robin"
    no_address = copy.deepcopy(document)
    no_address["channels"]["notifications"]["address"] = 5

    for broken in (wrong_action, wrong_binding, no_address):
        assert problems(broken)


def test_structure_channels_operations_and_messages() -> None:
    document = asyncapi_document(DEFAULT)

    assert document["asyncapi"] == "3.0.0" and document["info"]["title"]
    for channel in document["channels"].values():
        assert channel["address"] and channel["messages"]
    actions = {name: op["action"] for name, op in document["operations"].items()}
    assert actions == {"receiveNotification": "receive", "deadLetter": "send", "sendEvent": "send"}
    for operation in document["operations"].values():
        channel_ref = operation["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/")
        for message in operation["messages"]:
            # An operation's messages are its channel's.
            assert message["$ref"].startswith(channel_ref + "/messages/")
            assert "payload" in pointed(document, pointed(document, message["$ref"])["$ref"])
    assert {"schemas", "messages"} <= set(document["components"])


def test_addresses_come_from_the_settings_and_events_can_be_off() -> None:
    settings = Settings(rabbitmq_queue_name="orders.push", events_exchange="orders.events")
    document = asyncapi_document(Addresses.of(settings))
    channels = document["channels"]

    assert channels["notifications"]["address"] == "orders.push"
    assert channels["deadLetters"]["address"] == settings.dead_letter_queue
    binding = channels["events"]["bindings"]["amqp"]
    assert binding["is"] == "routingKey"
    assert binding["exchange"] == {
        "name": "orders.events",
        "type": EXCHANGE_TYPE,
        "durable": True,
        "autoDelete": False,
    }
    assert channels["events"]["parameters"]["event"]["enum"] == list(EVENT_NAMES)

    quiet = asyncapi_document(Addresses("orders.push", "orders.push.dlq", ""))
    assert "events" not in quiet["channels"] and "sendEvent" not in quiet["operations"]
    assert not any(ref.startswith("#/channels/events") for ref in refs(quiet))
    assert set(quiet["components"]["messages"]) == {"notification", "deadLetter"}


def test_each_event_message_is_routed_by_its_name_with_its_schema() -> None:
    document = asyncapi_document(DEFAULT)
    messages = document["components"]["messages"]
    schemas = document["components"]["schemas"]
    exported = event_schemas()

    for event in EVENT_NAMES:
        [message] = [m for m in messages.values() if m.get("name") == event]
        assert message["bindings"]["amqp"]["messageType"] == event
        assert pointed(document, message["payload"]["$ref"]) == exported[event]
        assert message["examples"][0]["payload"] == event_examples()[event]
    assert schemas.keys() >= {"Notification", "SubscriptionCreated", "NotificationCompleted"}


def test_event_schemas_accept_the_examples_and_refuse_endpoint_urls() -> None:
    schemas = event_schemas()
    examples = event_examples()
    assert tuple(schemas) == EVENT_NAMES == tuple(examples)

    for event, schema in schemas.items():
        Draft7Validator.check_schema(schema)
        Draft202012Validator.check_schema(schema)
        assert not list(refs(schema)), event
        validator = Draft202012Validator(schema)
        example = examples[event]
        assert validator.is_valid(example), list(validator.iter_errors(example))
        assert Draft7Validator(schema).is_valid(example)
        leaky = {**example, "endpoint": "https://fcm.googleapis.com/fcm/send/abc"}
        assert not validator.is_valid(leaky), event
        assert not validator.is_valid({**example, "event": "something.else"}), event
        assert not validator.is_valid({**example, "occurred_at": "2025-01-31 12:00:00"}), event
        for field in example:
            short = {key: value for key, value in example.items() if key != field}
            assert not validator.is_valid(short), (event, field)

    completed = copy.deepcopy(examples[NOTIFICATION_COMPLETED])
    completed["devices"][0]["endpoint"] = "https://fcm.googleapis.com/fcm/send/abc"
    assert not Draft202012Validator(schemas[NOTIFICATION_COMPLETED]).is_valid(completed)


def test_the_queue_message_is_the_generated_schema_with_its_headers() -> None:
    document = asyncapi_document(DEFAULT)
    message = document["components"]["messages"]["notification"]
    payload = pointed(document, message["payload"]["$ref"])
    generated = notification_schema()

    assert generated is not None and payload["properties"] == generated["properties"]
    assert USER_VERIFIED_HEADER in message["headers"]["properties"]
    dead = document["components"]["messages"]["deadLetter"]["headers"]["properties"]
    assert {"x-death-reason", "x-original-queue", "x-notification-id"} <= set(dead)


def test_its_example_is_accepted_by_the_consumer_validation() -> None:
    policy = EndpointPolicy(Settings().push_endpoint_allowlist, allow_http=False)
    message = asyncapi_document(DEFAULT)["components"]["messages"]["notification"]
    for example in message["examples"]:
        notification = parse_notification(orjson.dumps(example["payload"]), policy)
        assert notification.rejected == (), notification.rejected
        assert len(notification.devices) == len(example["payload"]["devices"])


def test_docs_asyncapi_yaml_is_the_generated_document() -> None:
    written = TARGET.read_text(encoding="utf-8")

    assert written == render(), "docs/asyncapi.yaml is stale: run scripts/write_asyncapi.py"
    assert yaml.safe_load(written) == asyncapi_document(DEFAULT)


@pytest.mark.e2e
async def test_served_without_a_token_for_the_service_settings(
    service_factory: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    service = await service_factory(API_TOKENS="peer-token-0123456789abcdef")
    settings = Settings.from_env(service.env, env_file=None)

    answer = await call(http, "GET", f"{service.base_url}/asyncapi.json")

    assert answer.status == 200, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json == asyncapi_document(Addresses.of(settings))
    assert answer.json["channels"]["notifications"]["address"] == service.queue
