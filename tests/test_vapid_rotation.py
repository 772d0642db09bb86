"""A key rotation end to end: a service with two VAPID keys hands out the current one and
signs each subscription with the key it was made with (web-push-testing checks that the
`k=` of every push is the subscription's applicationServerKey)."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import ServiceFactory
from tests.support import PushServer, VapidPair, assert_error, call, unique
from tests.test_api_notifications import TOKEN, final_status, notification, publish


@pytest.mark.e2e
async def test_each_subscription_is_signed_with_the_key_it_was_made_with(
    service_factory: ServiceFactory,
    http: aiohttp.ClientSession,
    pushserver: PushServer,
    vapid: VapidPair,
) -> None:
    new = VapidPair.generate()
    service = await service_factory(
        API_TOKENS=TOKEN, VAPID_KEYS=f"new={new.private}", VAPID_CURRENT_KEY_ID="new"
    )
    key = await call(http, "GET", f"{service.base_url}/vapid_public_key")
    assert key.json == {"public_key": new.public, "key_id": "new"}

    # Made before the rotation with VAPID_PRIVATE_KEY (id "default"), and after it.
    before, before_hash = await pushserver.subscribe(vapid.public)
    after, after_hash = await pushserver.subscribe(new.public)
    message = notification(unique("rotation"), {**before, "vapid_key_id": "default"})
    message["devices"].append(after)  # names no key: the current one is tried first
    answer = await publish(http, service, message)
    assert answer.status == 202, answer.text

    record = await final_status(http, service, answer.json["status_url"])
    assert (record["status"], record["sent"]) == ("sent", 2), record
    for client_hash in (before_hash, after_hash):
        [received] = await pushserver.messages(client_hash)
        assert received["notification_id"] == message["notification_id"]

    unknown = notification(unique("rotation"), {**before, "vapid_key_id": "retired"})
    assert_error(await publish(http, service, unknown), 422, "unknown_vapid_key")
