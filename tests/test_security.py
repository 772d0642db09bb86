"""The SSRF guard at the consumer's door, end to end: hostile endpoints inside queue
messages are refused, recorded as `endpoint_not_allowed`, and no request leaves
the process (a local sink on the loopback target proves it)."""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
import pytest
import redis.asyncio as redis

from tests.conftest import ServiceFactory
from tests.support import Rabbit, device_keys, push_sink, stored_record, unique, wait_until


def loopback_hostname() -> str | None:
    """A name other than `localhost` that resolves to loopback here (the machine's own)."""
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
    except OSError:
        return None
    loopback = addresses and all(ipaddress.ip_address(a).is_loopback for a in addresses)
    return name if loopback and name != "localhost" else None


def hostile_endpoints(port: int) -> list[str]:
    endpoints = [
        f"http://127.1:{port}/push/short",
        f"http://2130706433:{port}/push/decimal",
        f"http://0x7f000001:{port}/push/hex",
        f"http://0177.0.0.1:{port}/push/octal",
        f"http://[::1]:{port}/push/v6",
        f"http://[::ffff:127.0.0.1]:{port}/push/mapped",
        f"http://localhost:{port}/push/localhost",
        f"http://0.0.0.0:{port}/push/any",
        f"http://user:secret@127.0.0.1:{port}/push/userinfo",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/push/private",
        "http://[fe80::1]/push/link-local",
        "ftp://127.0.0.1/push/ftp",
        "file:///etc/passwd",
        "javascript:alert(1)",
    ]
    name = loopback_hostname()
    if name is not None:
        endpoints.append(f"http://{name}:{port}/push/resolves-to-loopback")
    return endpoints


async def test_hostile_endpoints_in_queue_messages_never_get_a_request(
    service_factory: ServiceFactory, rabbit: Rabbit, redis_client: redis.Redis
) -> None:
    async with push_sink() as sink:
        port = int(sink.base_url.rsplit(":", 1)[1])
        service = await service_factory(PUSH_ENDPOINT_ALLOWLIST="*", PUSH_ALLOW_HTTP="true")
        keys = device_keys()
        endpoints = hostile_endpoints(port)
        notification_id = unique("ssrf")
        await rabbit.publish(
            service.queue,
            {
                "notification_id": notification_id,
                "devices": [{"endpoint": e, "keys": keys} for e in endpoints],
                "title": "x",
            },
        )

        async def finished() -> dict | None:
            record = await stored_record(redis_client, service.prefix, notification_id)
            return record if record.get("status") in ("sent", "failed") else None

        record = await wait_until(finished, 30, message="the outcome")
    assert record["status"] == "failed"
    assert record["failed"] == len(endpoints)
    reasons = {d["endpoint"]: d["reason"] for d in record["devices"]}
    assert reasons == dict.fromkeys(endpoints, "endpoint_not_allowed")
    assert sink.total == 0


async def test_subscribe_refuses_a_name_that_resolves_to_loopback(
    service_factory: ServiceFactory,
) -> None:
    name = loopback_hostname()
    if name is None:
        pytest.skip("no hostname other than localhost resolves to loopback here")
    service = await service_factory(PUSH_ENDPOINT_ALLOWLIST="*", PUSH_ALLOW_HTTP="true")
    body = {"endpoint": f"http://{name}:9/push/x", "keys": device_keys()}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{service.base_url}/subscribe", json=body) as response:
            assert response.status == 422
            answer = await response.json()
    assert answer["error"] == "endpoint_not_allowed"
    assert "non-public" in answer["detail"]
