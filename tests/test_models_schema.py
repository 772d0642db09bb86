"""The queue message's JSON Schema against the consumer's parser, on one table of cases.

Each row says what the consumer does with the message and whether the schema (checked
with the `jsonschema` library) accepts it. They agree, except on the rows marked with
why they cannot: a rule JSON Schema cannot express, one that is per device (the device
fails alone, the message is still accepted), or one that depends on the service's
settings.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonschema
import msgspec
import pytest

from push_service.errors import ValidationError
from push_service.models import MAX_ACTIONS, PayloadFormat, notification_json_schema
from push_service.models import parse_notification as consume
from push_service.vapid import b64url_encode
from tests.support import ROOT
from tests.test_models import AUTH, POLICY, devices_list, message, off_curve, subscription
from tests.test_models_payload import VOCABULARY

SCHEMA = notification_json_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
MAX_DEVICES = 10
Consumer = Literal["accepts", "accepts, device rejected", "refuses"]
Mark = Literal["", "per device", "not expressible", "service setting"]


def readme_example() -> dict[str, Any]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Queue message", 1)[1]
    block = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert block, "no JSON example in the README's Queue message section"
    example: dict[str, Any] = json.loads(block.group(1))
    return example


@dataclass(frozen=True)
class Case:
    name: str
    body: Any
    consumer: Consumer
    schema: bool
    mark: Mark = ""
    default: PayloadFormat = field(default="classic")


ACTION = {"action": "a", "title": "A"}
BAD_KEYS = subscription(endpoint="https://fcm.googleapis.com/fcm/send/k", keys=["x", "y"])
OFF_CURVE = subscription(
    endpoint="https://fcm.googleapis.com/fcm/send/c",
    keys={"p256dh": b64url_encode(off_curve()), "auth": AUTH},
)
NO_URL = {k: v for k, v in message().items() if k != "action_url"}


def without(name: str) -> dict[str, Any]:
    return {k: v for k, v in message().items() if k != name}


CASES = [
    Case("README example", readme_example(), "accepts, device rejected", True, "per device"),
    Case("valid", message(), "accepts", True),
    Case("full vocabulary", message(**VOCABULARY), "accepts", True),
    Case("declarative", message(payload_format="declarative", **VOCABULARY), "accepts", True),
    Case("integer ids", message(notification_id=42, user_id=7), "accepts", True),
    Case("optional nulls", message(body=None, ttl=None, actions=None, lang=None), "accepts", True),
    Case("unknown members", message(priority="high"), "accepts", True),
    Case("not an object", [message()], "refuses", False),
    Case("null", None, "refuses", False),
    Case("no notification_id", without("notification_id"), "refuses", False),
    Case("id with space", message(notification_id="a b"), "refuses", False),
    Case("id with newline", message(notification_id="abc\n"), "refuses", False),
    Case("id too long", message(notification_id="a" * 129), "refuses", False),
    Case("id negative", message(notification_id=-1), "refuses", False),
    Case("id boolean", message(notification_id=True), "refuses", False),
    Case("id fraction", message(notification_id=1.5), "refuses", False),
    Case("id 1.0", message(notification_id=1.0), "refuses", True, "not expressible"),
    Case("no devices", without("devices"), "refuses", False),
    Case("devices empty", message(devices=[]), "refuses", False),
    Case("devices object", message(devices=subscription()), "refuses", False),
    Case("topic audience", {**without("devices"), "audience": {"topic": "news"}}, "accepts", True),
    Case("user audience", {**without("devices"), "audience": {"user_id": 7}}, "accepts", True),
    Case("devices and audience", message(audience={"topic": "news"}), "refuses", False),
    Case("audience of both", {**without("devices"), "audience": {"topic": "t", "user_id": "u"}},
         "refuses", False),
    Case("audience empty", {**without("devices"), "audience": {}}, "refuses", False),
    Case("audience topic +", {**without("devices"), "audience": {"topic": "a+b"}}, "refuses",
         False),
    Case("no title", without("title"), "refuses", False),
    Case("title null", message(title=None), "refuses", False),
    Case("title too long", message(title="t" * 257), "refuses", False),
    Case("body number", message(body=1), "refuses", False),
    Case("ttl negative", message(ttl=-1), "refuses", False),
    Case("ttl string", message(ttl="60"), "refuses", False),
    Case("urgency", message(urgency="urgent"), "refuses", False),
    Case("topic +", message(topic="a+b"), "refuses", False),
    Case("topic newline", message(topic="abc\n"), "refuses", False),
    Case("action_url javascript", message(action_url="javascript:alert(1)"), "refuses", False),
    Case("action_url relative", message(action_url="/path"), "refuses", False),
    Case("icon tab scheme", message(icon="java\tscript:x"), "refuses", False),
    Case("image data", message(image="data:image/png,x"), "refuses", False),
    Case("data list", message(data=[1]), "refuses", False),
    Case("user_id boolean", message(user_id=False), "refuses", False),
    Case("user_id empty", message(user_id=""), "refuses", False),
    Case("payload_format", message(payload_format="webpush"), "refuses", False),
    Case("declarative, no URL", {**NO_URL, "payload_format": "declarative"}, "refuses", False),
    Case("renotify, no tag", message(renotify=True), "refuses", False),
    Case("renotify, empty tag", message(renotify=True, tag=""), "refuses", False),
    Case("silent and vibrate", message(silent=True, vibrate=[1]), "refuses", False),
    Case("too many actions", message(actions=[ACTION] * (MAX_ACTIONS + 1)), "refuses", False),
    Case("action, no title", message(actions=[{"action": "a"}]), "refuses", False),
    Case("action relative", message(actions=[{**ACTION, "navigate": "/p"}]), "refuses", False),
    Case("lang", message(lang="en_US!"), "refuses", False),
    Case("dir", message(dir="up"), "refuses", False),
    Case("vibrate", message(vibrate=[-1]), "refuses", False),
    Case("timestamp", message(timestamp=1.5), "refuses", False),
    Case("app_badge", message(app_badge=True), "refuses", False),
    Case("mutable", message(mutable="yes"), "refuses", False),
    Case("same action twice", message(actions=[ACTION, ACTION]), "refuses", True,
         "not expressible"),
    Case("keys not an object", message(devices=[BAD_KEYS, subscription()]),
         "accepts, device rejected", False, "per device"),
    Case("device a string", message(devices=["x", subscription()]),
         "accepts, device rejected", False, "per device"),
    Case("key off the curve", message(devices=[OFF_CURVE, subscription()]),
         "accepts, device rejected", True, "per device"),
    Case("endpoint not allowed", message(devices=[subscription(endpoint="https://127.0.0.1/")]),
         "accepts, device rejected", True, "per device"),
    Case("no URL, declarative by default", NO_URL, "refuses", True, "service setting",
         default="declarative"),
    Case("more than MAX_DEVICES_PER_MESSAGE", message(devices=devices_list(MAX_DEVICES + 1)),
         "refuses", True, "service setting"),
]  # fmt: skip


def consumer_verdict(case: Case) -> Consumer:
    try:
        n = consume(
            msgspec.json.encode(case.body), POLICY, MAX_DEVICES, payload_format=case.default
        )
    except ValidationError:
        return "refuses"
    return "accepts, device rejected" if n.rejected else "accepts"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_schema_and_consumer_agree_except_where_marked(case: Case) -> None:
    schema_accepts = VALIDATOR.is_valid(case.body)
    assert consumer_verdict(case) == case.consumer
    assert schema_accepts == case.schema
    consumer_accepts = case.consumer != "refuses"
    if consumer_accepts != schema_accepts:
        assert case.mark, "schema and consumer disagree on an unmarked case"


def test_every_kind_of_case_is_in_the_table() -> None:
    assert {c.consumer for c in CASES} == {"accepts", "accepts, device rejected", "refuses"}
    assert {c.mark for c in CASES} == {"", "per device", "not expressible", "service setting"}


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["required"] == ["notification_id", "title"]
    # Either devices or an audience of exactly one user or topic.
    assert SCHEMA["oneOf"] == [{"required": ["devices"]}, {"required": ["audience"]}]
    assert len(SCHEMA["properties"]["audience"]["oneOf"]) == 2
    assert SCHEMA["properties"]["devices"]["items"]["title"] == "DeviceSubscription"
    assert "$ref" not in json.dumps(SCHEMA)  # self-contained: it may be embedded anywhere


def test_the_schema_says_what_it_cannot_express() -> None:
    text = json.dumps(SCHEMA)
    for words in (
        "fails alone",
        "point on the curve",
        "PUSH_ENDPOINT_ALLOWLIST",
        "must be unique",
        "PUSH_PAYLOAD_FORMAT",
        "MAX_DEVICES_PER_MESSAGE",
    ):
        assert words in text, words


def test_each_call_returns_a_fresh_copy() -> None:
    first = notification_json_schema()
    first["title"] = "changed"
    assert notification_json_schema()["title"] != "changed"


def patterns(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["pattern"]] if isinstance(value.get("pattern"), str) else []
        return found + [p for v in value.values() for p in patterns(v)]
    if isinstance(value, list):
        return [p for v in value for p in patterns(v)]
    return []


SAMPLES = ["abc", "abc\n", "a b", "https://e.com/x", "HTTP://E.COM", "/i.png", "java\tscript:x",
           "javascript:x", "//cdn/x", "https:///x", "en", "pt-BR", "x" * 40, "é", ""]  # fmt: skip


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_patterns_mean_the_same_in_ecma_262_as_in_python() -> None:
    """JSON Schema patterns are ECMA-262 regexes; msgspec and jsonschema here use Python's."""
    found = sorted(set(patterns(SCHEMA)))
    assert len(found) >= 5
    script = (
        "const [pats, samples] = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "console.log(JSON.stringify(pats.map(p => samples.map(s => new RegExp(p, 'u').test(s)))));"
    )
    result = subprocess.run(
        ["node", "-e", script],
        input=json.dumps([found, SAMPLES]),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    ecma = json.loads(result.stdout)
    python = [[re.search(p, s) is not None for s in SAMPLES] for p in found]
    assert ecma == python


def test_the_readme_shows_what_the_service_decrypts() -> None:
    """The README's classic and declarative examples, from its example message plus options."""
    section = (ROOT / "README.md").read_text().split("\n## Queue message", 1)[1]
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", section, re.DOTALL)]
    example, classic, declarative = blocks[:3]
    example["devices"] = [subscription()]
    options = {
        "tag": "order-1",
        "require_interaction": True,
        "app_badge": 3,
        "mutable": False,
        "data": {"order": 1},
        "actions": [{"action": "track", "title": "Track", "navigate": "https://example.com/track"}],
    }
    for payload_format, expected in (("classic", classic), ("declarative", declarative)):
        body = msgspec.json.encode({**example, **options, "payload_format": payload_format})
        assert msgspec.json.decode(consume(body, POLICY).payload) == expected
