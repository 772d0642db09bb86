"""The payload formats (classic, declarative), the notification vocabulary, the lenient rules."""

from __future__ import annotations

import typing
from typing import Any

import msgspec
import orjson
import pytest

from push_service.config import URGENCIES
from push_service.errors import ValidationError
from push_service.models import (
    DECLARATIVE_PUSH,
    MAX_ACTIONS,
    MAX_PLAINTEXT_BYTES,
    parse_notification,
    parse_subscription,
)
from push_service.models import messages as error_table
from push_service.models.rules import Urgency
from push_service.models.wire import NotificationMessage
from tests.test_models import AUTH, FCM, P256DH, POLICY, dumps, message, subscription

VOCABULARY: dict[str, Any] = {
    "icon": "/icon.png",
    "badge": "https://cdn.example/badge.png",
    "image": "https://cdn.example/hero.jpg",
    "tag": "order-1",
    "lang": "pt-BR",
    "dir": "ltr",
    "require_interaction": True,
    "renotify": True,
    "silent": False,
    "vibrate": [200, 100, 200],
    "timestamp": 1_767_225_600_000,
    "app_badge": 3,
    "mutable": False,
    "data": {"order": 1},
    "actions": [
        {"action": "track", "title": "Track", "navigate": "https://shop.example/track/1"},
        {"action": "later", "title": "Later", "icon": "/later.png"},
    ],
}


def payload_of(body: Any, **options: Any) -> dict[str, Any]:
    return orjson.loads(parse_notification(dumps(body), POLICY, **options).payload)


def refused(body: Any, **options: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        parse_notification(body if isinstance(body, bytes) else dumps(body), POLICY, **options)
    return info.value


# --- classic -------------------------------------------------------------------------------


def test_classic_payload_carries_the_whole_vocabulary_under_queue_names() -> None:
    assert payload_of(message(**VOCABULARY)) == {
        "notification_id": "n-1",
        "title": "Title",
        "body": "Text",
        "action_url": "https://example.com/path",
        **VOCABULARY,
    }


def test_classic_is_the_default_and_unchanged_for_todays_messages() -> None:
    n = parse_notification(dumps(message()), POLICY)
    assert n.payload_format == "classic"
    assert orjson.loads(n.payload) == {
        "notification_id": "n-1",
        "title": "Title",
        "body": "Text",
        "action_url": "https://example.com/path",
    }


# --- declarative ---------------------------------------------------------------------------


def test_declarative_payload_minimal() -> None:
    msg = message(payload_format="declarative")
    del msg["body"]
    assert payload_of(msg) == {
        "web_push": DECLARATIVE_PUSH,
        "notification": {
            "title": "Title",
            "navigate": "https://example.com/path",
            "body": "",
            "data": {"notification_id": "n-1"},
        },
    }


# VOCABULARY as the declarative payload's `notification` carries it (the spec's spelling).
DECLARATIVE_MEMBERS: dict[str, Any] = {
    "icon": "/icon.png",
    "badge": "https://cdn.example/badge.png",
    "image": "https://cdn.example/hero.jpg",
    "tag": "order-1",
    "lang": "pt-BR",
    "dir": "ltr",
    "requireInteraction": True,
    "renotify": True,
    "silent": False,
    "vibrate": [200, 100, 200],
    "timestamp": 1_767_225_600_000,
}


def declarative_with_vocabulary(
    notification_id: str, title: str, body: str, action_url: str
) -> dict[str, Any]:
    """The declarative payload of a message with VOCABULARY, as documented."""
    return {
        "web_push": 8030,
        "notification": {
            "title": title,
            "navigate": action_url,
            "body": body,
            **DECLARATIVE_MEMBERS,
            "data": {"order": 1, "notification_id": notification_id},
            "actions": [
                {"action": "track", "title": "Track", "navigate": "https://shop.example/track/1"},
                # The specification requires a URL per action: the notification's by default.
                {"action": "later", "title": "Later", "navigate": action_url, "icon": "/later.png"},
            ],
        },
        "app_badge": 3,
        "mutable": False,
    }


def test_declarative_payload_spells_members_as_the_specification() -> None:
    payload = payload_of(message(payload_format="declarative", **VOCABULARY))
    assert payload == declarative_with_vocabulary(
        "n-1", "Title", "Text", "https://example.com/path"
    )


def test_the_service_default_applies_only_to_messages_that_do_not_say() -> None:
    declared = parse_notification(dumps(message()), POLICY, payload_format="declarative")
    assert declared.payload_format == "declarative"
    assert orjson.loads(declared.payload)["web_push"] == 8030
    classic = parse_notification(
        dumps(message(payload_format="classic")), POLICY, payload_format="declarative"
    )
    assert classic.payload_format == "classic"
    assert "web_push" not in orjson.loads(classic.payload)


def test_the_notification_id_in_data_wins_over_the_publishers() -> None:
    payload = payload_of(message(payload_format="declarative", data={"notification_id": "x"}))
    assert payload["notification"]["data"] == {"notification_id": "n-1"}


def test_an_oversize_payload_parses_and_is_left_to_delivery() -> None:
    # delivery.py fails each device with payload_too_large; parsing keeps the message.
    n = parse_notification(dumps(message(body="é" * 2048, data={"x": "y" * 4000})), POLICY)
    assert len(n.payload) > MAX_PLAINTEXT_BYTES and len(n.devices) == 1


# --- refused combinations and values ----------------------------------------------------

ACTION = {"action": "a", "title": "A"}
INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("declarative without url", {"payload_format": "declarative", "action_url": None},
     "missing_field", "action_url is required for the declarative payload"),
    ("renotify without tag", {"renotify": True}, "invalid_combination", "renotify needs a tag"),
    ("renotify empty tag", {"renotify": True, "tag": ""}, "invalid_combination", "needs a tag"),
    ("silent and vibrate", {"silent": True, "vibrate": [100]}, "invalid_combination",
     "silent and vibrate"),
    ("silent and empty vibrate", {"silent": True, "vibrate": []}, "invalid_combination",
     "silent and vibrate"),
    ("too many actions", {"actions": [ACTION] * (MAX_ACTIONS + 1)}, "too_many_actions",
     f"at most {MAX_ACTIONS} actions"),
    ("actions not a list", {"actions": ACTION}, "invalid_field", "actions must be a list"),
    ("action not an object", {"actions": ["a"]}, "invalid_field", "actions must be a list"),
    ("action without title", {"actions": [{"action": "a"}]}, "missing_field",
     "actions[0].title is required"),
    ("action empty name", {"actions": [{"action": "", "title": "A"}]}, "invalid_field",
     "actions[0].action must be a string of 1 to 64"),
    ("action javascript", {"actions": [ACTION, {**ACTION, "action": "b",
     "navigate": "javascript:alert(1)"}]}, "invalid_field",
     "actions[1].navigate must be an http(s) URL"),
    ("action relative navigate", {"actions": [{**ACTION, "navigate": "/p"}]}, "invalid_field",
     "actions[0].navigate must be an http(s) URL"),
    ("action icon data", {"actions": [{**ACTION, "icon": "data:image/png,x"}]}, "invalid_field",
     "actions[0].icon must be an http(s) URL or a URL relative"),
    ("duplicate actions", {"actions": [ACTION, ACTION]}, "invalid_field", "distinct action names"),
    ("image javascript", {"image": "javascript:alert(1)"}, "invalid_field", "image must be"),
    ("image tab javascript", {"image": "java\tscript:alert(1)"}, "invalid_field", "image must"),
    ("icon newline", {"icon": "/i.png\n"}, "invalid_field", "icon must be"),
    ("action_url newline", {"action_url": "https://e.com/\n"}, "invalid_field", "http(s) URL"),
    ("action_url no slashes", {"action_url": "https:e.com"}, "invalid_field", "http(s) URL"),
    ("action_url no host", {"action_url": "https:///path"}, "invalid_field", "http(s) URL"),
    ("action_url leading space", {"action_url": " https://e.com/"}, "invalid_field", "http(s)"),
    ("lang junk", {"lang": "en_US!"}, "invalid_field", "lang must be a language tag"),
    ("lang too long", {"lang": "en-" + "abcdefgh-" * 4}, "invalid_field", "lang must be"),
    ("dir up", {"dir": "up"}, "invalid_field", "dir must be one of auto, ltr, rtl"),
    ("require_interaction text", {"require_interaction": "yes"}, "invalid_field",
     "require_interaction must be true or false"),
    ("renotify number", {"renotify": 1, "tag": "t"}, "invalid_field", "renotify must be true"),
    ("silent null string", {"silent": "null"}, "invalid_field", "silent must be true or false"),
    ("mutable number", {"mutable": 0}, "invalid_field", "mutable must be true or false"),
    ("vibrate negative", {"vibrate": [-1]}, "invalid_field", "vibrate must be a list"),
    ("vibrate fraction", {"vibrate": [1.5]}, "invalid_field", "vibrate must be a list"),
    ("vibrate over 32 bits", {"vibrate": [2**32]}, "invalid_field", "vibrate must be a list"),
    ("vibrate too long", {"vibrate": [1] * 33}, "invalid_field", "at most 32 durations"),
    ("vibrate number", {"vibrate": 200}, "invalid_field", "vibrate must be a list"),
    ("timestamp negative", {"timestamp": -1}, "invalid_field", "timestamp must be milliseconds"),
    ("timestamp text", {"timestamp": "now"}, "invalid_field", "timestamp must be milliseconds"),
    ("app_badge negative", {"app_badge": -1}, "invalid_field", "app_badge must be an integer"),
    ("app_badge bool", {"app_badge": True}, "invalid_field", "app_badge must be an integer"),
    ("payload_format other", {"payload_format": "webpush"}, "invalid_payload_format",
     "payload_format must be classic or declarative"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "code", "detail"),
    [pytest.param(o, c, d, id=name) for name, o, c, d in INVALID],
)
def test_invalid_vocabulary_is_refused_with_its_reason(
    overrides: dict[str, Any], code: str, detail: str
) -> None:
    error = refused(message(**overrides))
    assert error.code == code
    assert detail in error.detail


def test_the_service_default_makes_action_url_required() -> None:
    msg = message()
    del msg["action_url"]
    parse_notification(dumps(msg), POLICY)  # classic: fine without
    assert refused(msg, payload_format="declarative").code == "missing_field"


def test_every_field_has_its_own_error_words() -> None:
    fields = {f.encode_name for f in msgspec.structs.fields(NotificationMessage)}
    assert fields <= set(error_table.MESSAGE)


def test_allowed_edges() -> None:
    ok = message(
        renotify=False,
        silent=True,
        vibrate=None,
        lang="",
        actions=[],
        image="//cdn.example/x.png",
        timestamp=0,
        app_badge=0,
        action_url="HTTPS://EXAMPLE.COM/Upper",
    )
    assert payload_of(ok)["action_url"] == "HTTPS://EXAMPLE.COM/Upper"


# --- lenient where it is safe -------------------------------------------------------------


def test_a_utf8_bom_before_the_json_is_ignored() -> None:
    n = parse_notification(b"\xef\xbb\xbf" + dumps(message()), POLICY)
    assert n.notification_id == "n-1"
    device, _ = parse_subscription(b"\xef\xbb\xbf" + dumps(subscription()), POLICY)
    assert device.endpoint == FCM + "abc"


def test_a_bom_alone_or_twice_is_still_not_json() -> None:
    assert refused(b"\xef\xbb\xbf").code == "invalid_json"
    assert refused(b"\xef\xbb\xbf\xef\xbb\xbf" + dumps(message())).code == "invalid_json"


@pytest.mark.parametrize(("value", "text"), [(0, "0"), (42, "42"), (2**63 - 1, str(2**63 - 1))])
def test_integer_ids_are_taken_as_their_digits(value: int, text: str) -> None:
    n = parse_notification(dumps(message(notification_id=value, user_id=value)), POLICY)
    assert (n.notification_id, n.user_id) == (text, text)
    assert orjson.loads(n.payload)["notification_id"] == text


def test_a_negative_integer_user_id_is_still_a_user_id() -> None:
    assert parse_notification(dumps(message(user_id=-7)), POLICY).user_id == "-7"


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("notification_id", 1.5, "invalid_notification_id"),
        ("notification_id", 1.0, "invalid_notification_id"),
        ("notification_id", True, "invalid_notification_id"),
        ("notification_id", 2**63, "invalid_notification_id"),
        ("user_id", 2.5, "invalid_user_id"),
        ("user_id", False, "invalid_user_id"),
        ("user_id", 2**64, "invalid_user_id"),
    ],
)
def test_non_integral_numbers_and_booleans_are_refused(name: str, value: Any, code: str) -> None:
    error = refused(msgspec.json.encode(message(**{name: value})))  # orjson stops at 64 bits
    assert error.code == code
    assert name in error.detail


# --- devices keep the text of their keys ------------------------------------------------


def test_a_device_gives_back_its_subscription_as_it_came() -> None:
    padded = {"p256dh": P256DH + "=", "auth": AUTH + "=="}
    n = parse_notification(dumps(message(devices=[subscription(keys=padded)])), POLICY)
    device = n.devices[0]
    assert device.subscription() == {"endpoint": FCM + "abc", "keys": padded}
    again = parse_notification(dumps(message(devices=[device.subscription()])), POLICY)
    assert again.devices[0] == device


def test_the_urgencies_are_the_configs() -> None:
    assert typing.get_args(Urgency) == URGENCIES
