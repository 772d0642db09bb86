"""The API described (push_service.api.openapi, docs, schemas): the OpenAPI document
validates, is self-contained (every `$ref` local), serves only what the app routes, and
schemathesis fuzzes every operation of the live service, from the served document, with
a token.

`SCHEMATHESIS_MAX_EXAMPLES` (default 100) sets the test cases per operation and phase;
the run's numbers go to test-artifacts/schemathesis.json.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from push_service.api.openapi import openapi_document
from push_service.api.openapi_schemas import NOTIFICATION_SCHEMA_URL
from push_service.api.schemas import components_of, notification_schema
from tests.conftest import ServiceFactory
from tests.document_refs import BASE, assert_self_contained
from tests.support import ROOT, Service, call

TOKEN = "peer-token-0123456789abcdef"
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "100"))
ARTIFACTS = ROOT / "test-artifacts"


FULL = {
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/vapid_public_key"),
    ("POST", "/subscribe"),
    ("DELETE", "/subscribe"),
    ("POST", "/notifications"),
    ("GET", "/notifications/{notification_id}"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/asyncapi.json"),
    ("GET", "/docs"),
    ("GET", "/schemas/notification.json"),
    ("GET", "/web_push_test/{name}"),
    ("GET", "/subscriptions"),
    ("DELETE", "/subscriptions/{device}"),
}


def operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


def test_openapi_document_is_valid_3_1_and_covers_every_route() -> None:
    document = openapi_document()

    validate(document, base_uri=BASE)

    assert document["openapi"] == "3.1.0"
    assert operations(document) >= FULL
    internal = {
        p
        for p, item in document["paths"].items()
        for op in item.values()
        if op.get("security") == [{"peerToken": []}]
    }
    assert internal == {
        "/notifications",
        "/notifications/{notification_id}",
        "/metrics",
        "/subscriptions",
        "/subscriptions/{device}",
    }


def test_openapi_document_is_self_contained() -> None:
    document = openapi_document()
    schemas = document["components"]["schemas"]

    assert assert_self_contained(document) > 40
    assert "$schema" not in schemas["Notification"]
    assert (
        schemas["Notification"]["properties"].keys()
        == notification_schema_served()["properties"].keys()
    )
    publish = document["paths"]["/notifications"]["post"]["requestBody"]
    assert publish["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Notification"
    }


def notification_schema_served() -> dict[str, Any]:
    schema = notification_schema()
    assert schema is not None
    return schema


def test_a_remote_reference_would_be_caught() -> None:
    document = openapi_document()
    document["components"]["schemas"]["Notification"] = {"$ref": NOTIFICATION_SCHEMA_URL}
    with pytest.raises(AssertionError, match="non-local"):
        assert_self_contained(document)
    document["components"]["schemas"]["Notification"] = {"$ref": "#/components/schemas/Nope"}
    with pytest.raises(KeyError):
        assert_self_contained(document)


def test_message_definitions_become_components_with_local_references() -> None:
    generated = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"devices": {"type": "array", "items": {"$ref": "#/$defs/Device"}}},
        "$defs": {
            "Device": {"type": "object", "properties": {"k": {"$ref": "#/$defs/Keys"}}},
            "Keys": {"type": "object"},
        },
    }
    components = components_of(generated, "Notification", frozenset({"Error"}))
    with pytest.raises(ValueError, match="Keys"):
        components_of(generated, "Notification", frozenset({"Keys"}))

    assert set(components) == {"Notification", "Device", "Keys"}
    assert components["Device"]["properties"]["k"] == {"$ref": "#/components/schemas/Keys"}
    assert "$defs" not in components["Notification"] and "$schema" not in components["Notification"]
    document = {"components": {"schemas": components}}
    assert assert_self_contained(document) == 2


def test_only_routed_operations_are_served() -> None:
    routed = FULL - {("DELETE", "/subscribe"), ("GET", "/metrics")}
    document = openapi_document(routed | {("HEAD", "/health")})

    assert operations(document) == routed
    assert "/metrics" not in document["paths"]
    assert set(document["paths"]["/subscribe"]) == {"post"}
    validate(document, base_uri=BASE)


def test_subscribe_describes_registration_replacement_and_removal() -> None:
    document = openapi_document()
    subscribe = document["paths"]["/subscribe"]
    body = document["components"]["schemas"]["PushSubscription"]["properties"]

    assert {"old_endpoint", "old_keys", "topics"} <= set(body)
    assert {"200", "202"} <= set(subscribe["post"]["responses"])
    assert {"200", "400", "404", "415", "422"} <= set(subscribe["delete"]["responses"])
    assert "security" not in subscribe["delete"]
    topics = Draft202012Validator(body["topics"])
    assert topics.is_valid(["news", "orders.shipped", "a:b-c_d"])
    assert not topics.is_valid(["has space"]) and not topics.is_valid(["x"] * 101)
    assert not topics.is_valid(["a" * 65])


async def live_document(http: aiohttp.ClientSession, service: Service) -> dict[str, Any]:
    served = await call(http, "GET", f"{service.base_url}/openapi.json")
    assert served.status == 200, served.text
    document: dict[str, Any] = served.json
    return document


@pytest.mark.e2e
async def test_served_documents_and_the_docs_page(
    service_factory: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    service = await service_factory(API_TOKENS=TOKEN)

    served = await live_document(http, service)
    assert served == openapi_document(operations(served))
    assert_self_contained(served)
    validate(served, base_uri=BASE)
    # What the served copy leaves out is what the service does not route: at most an
    # operation described ahead of its code.
    missing = operations(openapi_document()) - operations(served)
    assert missing <= {("DELETE", "/subscribe")}
    for method, path in missing:
        answer = await call(http, method, f"{service.base_url}{path}")
        assert answer.status in (404, 405), (method, path, answer.status)
    alone = await call(http, "GET", f"{service.base_url}{NOTIFICATION_SCHEMA_URL}")
    assert alone.status == 200 and alone.headers["Content-Type"].startswith(
        "application/schema+json"
    )
    page = await call(http, "GET", f"{service.base_url}/docs")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
    for asset in ("docs/swagger-ui-bundle.js", "docs/swagger-ui.css", "docs/init.js"):
        assert f'"{asset}"' in page.text
        answer = await call(http, "GET", f"{service.base_url}/{asset}")
        assert answer.status == 200, asset
        assert len(answer.text) > 100, asset
    assert (await call(http, "GET", f"{service.base_url}/docs/../setup.cfg")).status == 404


@pytest.mark.e2e
async def test_schemathesis_finds_nothing_on_the_live_service(
    service_factory: ServiceFactory, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    service = await service_factory(API_TOKENS=TOKEN, SUBSCRIBE_RATE_LIMIT="0", LOG_LEVEL="WARNING")
    document = await live_document(http, service)
    schema_file = tmp_path / "openapi.json"
    schema_file.write_bytes(orjson.dumps(document))
    report = tmp_path / "report.json"

    run = await asyncio.to_thread(
        subprocess.run,
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file",
            str(ROOT / "tests/schemathesis.toml"),
            "run",
            str(schema_file),
            "--url",
            service.base_url,
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "11",
            # One worker: with two, Hypothesis describes lambdas by parsing their source
            # in both threads at once (ast.parse and its LRU cache of lambdas are not
            # thread-safe on CPython 3.11): "AST constructor recursion depth mismatch",
            # then a KeyError, reported as a flaky Runtime Error on some operation.
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--generation-database",
            "none",
            "--report",
            "json",
            "--report-json-path",
            str(report),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "schemathesis.txt").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Traceback" not in service.logs()
