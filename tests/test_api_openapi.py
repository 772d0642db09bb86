"""The API described (push_service.api.openapi, docs, schemas): the OpenAPI document
validates, and schemathesis fuzzes every operation of the live service with a token.

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
from openapi_spec_validator import validate

from push_service.api.openapi import openapi_document
from push_service.api.openapi_schemas import NOTIFICATION_SCHEMA_URL
from tests.conftest import ServiceFactory
from tests.support import ROOT, Service, call

TOKEN = "peer-token-0123456789abcdef"
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "100"))
ARTIFACTS = ROOT / "test-artifacts"


async def message_schema(http: aiohttp.ClientSession, service: Service) -> dict[str, Any]:
    answer = await call(http, "GET", f"{service.base_url}{NOTIFICATION_SCHEMA_URL}")
    assert answer.status == 200, answer.text
    assert answer.headers["Content-Type"].startswith("application/schema+json")
    schema: dict[str, Any] = answer.json
    return schema


def resolved_document(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the message schema in place of its URL reference."""
    document = openapi_document()
    component = document["components"]["schemas"]["Notification"]
    assert component["$ref"] == NOTIFICATION_SCHEMA_URL
    document["components"]["schemas"]["Notification"] = {
        key: value for key, value in schema.items() if key != "$schema"
    }
    return document


def test_openapi_document_is_valid_3_1_and_covers_every_route() -> None:
    document = openapi_document()
    placeholder = {"type": "object"}  # the message schema is checked on its own below
    document["components"]["schemas"]["Notification"] = placeholder

    validate(document)

    assert document["openapi"] == "3.1.0"
    operations = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
    assert {
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/vapid_public_key"),
        ("POST", "/subscribe"),
        ("POST", "/notifications"),
        ("GET", "/notifications/{notification_id}"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/schemas/notification.json"),
        ("GET", "/web_push_test/{name}"),
    } <= operations
    internal = {
        p
        for p, item in document["paths"].items()
        for op in item.values()
        if op.get("security") == [{"peerToken": []}]
    }
    assert internal == {"/notifications", "/notifications/{notification_id}", "/metrics"}


@pytest.mark.e2e
async def test_served_documents_and_the_docs_page(
    service_factory: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    service = await service_factory(API_TOKENS=TOKEN)

    served = await call(http, "GET", f"{service.base_url}/openapi.json")
    assert served.status == 200 and served.json == openapi_document()
    validate(resolved_document(await message_schema(http, service)))
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
    document = resolved_document(await message_schema(http, service))
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
            "--workers",
            "2",
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
