"""Peer credentials (push_service.api.auth) on every internal endpoint, against the real
service: without a token, with a wrong one, with a right one, in production and in
development, with and without API_TOKENS."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from push_service.api.auth import PeerAuth, bearer_token
from tests.conftest import ServiceFactory
from tests.support import (
    Answer,
    PushSink,
    Service,
    assert_error,
    call,
    device_keys,
    free_port,
    push_sink,
    unique,
    wait_until,
)

pytestmark = pytest.mark.e2e

TOKEN = "peer-token-0123456789abcdef"
OTHER_TOKEN = "peer-token-other-0123456789"
WRONG = "peer-token-wrong-0123456789"


def message(sink: PushSink, notification_id: str) -> dict[str, Any]:
    return {
        "notification_id": notification_id,
        "devices": [{"endpoint": sink.endpoint(notification_id), "keys": device_keys()}],
        "title": "Auth test",
    }


async def internal_calls(
    http: aiohttp.ClientSession, service: Service, sink: PushSink, token: str | None
) -> dict[str, Answer]:
    """One call to each internal endpoint, with `token` (or none)."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    notification_id = unique("auth")
    base = service.base_url
    return {
        "POST /notifications": await call(
            http,
            "POST",
            f"{base}/notifications",
            json=message(sink, notification_id),
            headers=headers,
        ),
        "GET /notifications/{id}": await call(
            http, "GET", f"{base}/notifications/{notification_id}", headers=headers
        ),
        "GET /metrics": await call(http, "GET", f"{base}/metrics", headers=headers),
    }


def assert_refused(answers: dict[str, Answer], invalid_token: bool = False) -> None:
    for what, answer in answers.items():
        assert_error(answer, 401, "unauthorized", what)
        challenge = answer.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer"), what
        assert ('error="invalid_token"' in challenge) is invalid_token, (what, challenge)
        assert answer.headers["Cache-Control"] == "no-store", what


def assert_allowed(answers: dict[str, Answer]) -> None:
    published = answers["POST /notifications"]
    assert published.status == 202, published.text
    # Read right after publishing: the record may not exist yet (404), but never 401.
    assert answers["GET /notifications/{id}"].status in (200, 404)
    assert answers["GET /metrics"].status == 200
    assert "push_messages_consumed_total" in answers["GET /metrics"].text


async def status_of(http: aiohttp.ClientSession, service: Service, answer: Answer) -> Answer:
    url = f"{service.base_url}{answer.json['status_url']}"
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def sent() -> Answer | None:
        status = await call(http, "GET", url, headers=headers)
        return status if status.status == 200 and status.json["status"] == "sent" else None

    result: Answer = await wait_until(sent, message="the published notification to be sent")
    return result


@pytest.mark.parametrize("node_env", ["production", "development"])
async def test_with_api_tokens_only_a_right_token_passes(
    node_env: str, service_factory: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    async with push_sink() as sink:
        service = await service_factory(NODE_ENV=node_env, API_TOKENS=f"{OTHER_TOKEN},{TOKEN}")

        assert_refused(await internal_calls(http, service, sink, None))
        assert_refused(await internal_calls(http, service, sink, WRONG), invalid_token=True)
        assert_refused(await internal_calls(http, service, sink, TOKEN[:-1]), invalid_token=True)
        answers = await internal_calls(http, service, sink, TOKEN)
        assert_allowed(answers)
        await status_of(http, service, answers["POST /notifications"])
        assert sink.total == 1  # the refused publishes never reached the queue
        # Public endpoints need no token.
        assert (await call(http, "GET", f"{service.base_url}/health")).status == 200
    logs = service.logs()
    for token in (TOKEN, OTHER_TOKEN, WRONG):
        assert token not in logs


async def test_production_without_tokens_closes_internal_endpoints(
    service_factory: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    async with push_sink() as sink:
        service = await service_factory(NODE_ENV="production")

        assert_refused(await internal_calls(http, service, sink, None))
        assert_refused(await internal_calls(http, service, sink, TOKEN))
    assert sink.total == 0
    assert "internal endpoints refuse every request" in service.logs()


async def test_development_without_tokens_leaves_them_open_with_a_warning(
    service_factory: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    async with push_sink() as sink:
        service = await service_factory(NODE_ENV="development")

        assert_allowed(await internal_calls(http, service, sink, None))
        assert_allowed(await internal_calls(http, service, sink, WRONG))
    assert "API_TOKENS is not set: internal endpoints" in service.logs()


async def test_metrics_port_serves_metrics_without_a_token_and_nothing_else(
    service_factory: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    metrics_port = free_port()
    service = await service_factory(
        NODE_ENV="production", API_TOKENS=TOKEN, METRICS_PORT=str(metrics_port)
    )
    listener = f"http://127.0.0.1:{metrics_port}"

    scraped = await call(http, "GET", f"{listener}/metrics")
    assert scraped.status == 200
    assert scraped.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE push_messages_consumed_total counter" in scraped.text
    for path in ("/health", "/ready", "/notifications/x", "/openapi.json", "/docs", "/"):
        assert (await call(http, "GET", f"{listener}{path}")).status == 404, path
    assert (await call(http, "POST", f"{listener}/notifications", json={})).status in (404, 405)
    # The public port keeps its token.
    assert_error(await call(http, "GET", f"{service.base_url}/metrics"), 401, "unauthorized")
    authorised = {"Authorization": f"Bearer {TOKEN}"}
    assert (
        await call(http, "GET", f"{service.base_url}/metrics", headers=authorised)
    ).status == 200


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer abc def", None),
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("BEARER abc", "abc"),
    ],
)
def test_bearer_token_parsing(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_peer_auth_modes() -> None:
    assert PeerAuth((), production=False).open
    assert not PeerAuth((), production=True).open
    assert not PeerAuth((TOKEN,), production=False).open
