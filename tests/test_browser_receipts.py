"""Receipts from a real service worker (issue 24): in headless Chromium, a push shown
and then clicked records `delivered` and `clicked`, and both are announced."""

from __future__ import annotations

from typing import Any

from tests.browser_support import MARKS, open_test_page
from tests.conftest import ServiceFactory
from tests.event_listener import event_listener
from tests.support import PushServer, Rabbit, VapidPair, final_record, unique, wait_until
from tests.test_browser import browser, click, redeliver_until_shown

pytestmark = MARKS
__all__ = ["browser"]  # the fixture, shared with test_browser


async def test_a_push_shown_and_clicked_records_both(
    service_factory: ServiceFactory,
    pushserver: PushServer,
    rabbit: Rabbit,
    vapid: VapidPair,
    browser: Any,
) -> None:
    exchange = unique("events")
    async with event_listener(exchange) as listener:
        service = await service_factory(EVENTS_EXCHANGE=exchange)
        subscription, client_hash = await pushserver.subscribe(vapid.public)
        notification_id = unique("rcpt")
        body = {
            "notification_id": notification_id,
            "devices": [subscription],
            "title": "Receipts",
            "action_url": "https://shop.example/r",
            "tag": "receipt-1",
            "require_interaction": True,
        }
        await rabbit.publish(service.queue, body)
        await final_record(service.base_url, notification_id)
        [payload] = await pushserver.messages(client_hash, receipts=True)
        assert payload["receipt"].startswith("/receipts/")

        async def counted(name: str) -> bool:
            record = await final_record(service.base_url, notification_id)
            return record.get(name) == 1

        async with open_test_page(browser, service.base_url, subscription) as tp:
            # A delivery Chromium's DevTools dropped is made again; the receipt of one shown
            # twice is a replay, which changes nothing (counted once below).
            await redeliver_until_shown(tp, payload, "receipt-1")
            await wait_until(lambda: counted("delivered"), message="the delivered receipt")
            worker = await tp.worker()
            assert await click(worker, "receipt-1", "") == "https://shop.example/r"
            await wait_until(lambda: counted("clicked"), message="the clicked receipt")
            assert tp.errors == [], tp.errors

        record = await final_record(service.base_url, notification_id)
        assert record["delivered"] == 1 and record["clicked"] == 1
        assert set(record["devices"][0]["receipts"]) >= {"delivered_at", "clicked_at"}
        for name in ("notification.delivered", "notification.clicked"):
            [event] = await listener.wait_for(name)
            assert event["notification_id"] == notification_id
