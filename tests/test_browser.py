"""The browser test page in headless Chromium, against the real service and web-push-testing.

Chromium cannot reach its own push service here (and Playwright contexts are
incognito), so the test injects a web-push-testing subscription in place of
`PushManager.subscribe`, and delivers the push event to the service worker
through the DevTools protocol (PITFALLS "Web push").
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import ServiceFactory
from tests.support import ROOT, PushServer, VapidPair, notification_record, wait_until

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = ROOT / "test-artifacts"
WELCOME_TITLE = "Welcome from the browser test"
WAIT_MS = 20_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
]

# Runs before the page's scripts: a PushManager whose subscribe() hands out the
# web-push-testing subscription (and records how the page called it).
FAKE_PUSH_MANAGER = """
(() => {
  const subscription = %s;
  window.__subscribeCalls = [];
  const fake = {
    endpoint: subscription.endpoint,
    expirationTime: null,
    options: { userVisibleOnly: true, applicationServerKey: null },
    toJSON() { return subscription; },
    getKey() { return null; },
    unsubscribe() { return Promise.resolve(true); },
  };
  if (typeof PushManager === 'undefined') return;
  PushManager.prototype.subscribe = function (options) {
    const key = options && options.applicationServerKey;
    window.__subscribeCalls.push({
      userVisibleOnly: Boolean(options && options.userVisibleOnly),
      applicationServerKey: key ? Array.from(new Uint8Array(key.buffer || key)) : null,
    });
    fake.options.applicationServerKey = key ? key.buffer || key : null;
    return Promise.resolve(fake);
  };
  PushManager.prototype.getSubscription = function () { return Promise.resolve(null); };
})();
"""


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


async def test_page_subscribes_through_the_api_and_shows_a_pushed_notification(
    service_factory: ServiceFactory,
    pushserver: PushServer,
    vapid: VapidPair,
    browser: Any,
) -> None:
    service = await service_factory(WELCOME_TITLE=WELCOME_TITLE)
    origin = service.base_url
    subscription, client_hash = await pushserver.subscribe(vapid.public)

    context = await browser.new_context()
    await context.grant_permissions(["notifications"], origin=origin)
    await context.add_init_script(script=FAKE_PUSH_MANAGER % orjson.dumps(subscription).decode())
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))

    # The DevTools side: learn the registration id of the page's service worker.
    cdp = await context.new_cdp_session(page)
    registrations: dict[str, dict[str, Any]] = {}

    def on_registrations(event: dict[str, Any]) -> None:
        for registration in event["registrations"]:
            registrations[registration["registrationId"]] = registration

    cdp.on("ServiceWorker.workerRegistrationUpdated", on_registrations)
    await cdp.send("ServiceWorker.enable")

    response = await page.goto(f"{origin}/web_push_test/web_push_test.html")
    assert response is not None and response.status == 200

    # Loaded: service worker ready, key shown, button usable, and no console errors.
    await page.wait_for_function(
        "() => document.querySelector('#sw-status').dataset.status === 'ready'"
    )
    await page.wait_for_function(
        "() => document.querySelector('#vapid-key').dataset.status === 'loaded'"
    )
    assert await page.text_content("#vapid-key") == vapid.public
    assert await page.text_content("#support-status") == "Web push is supported in this browser."
    await page.wait_for_function("() => !document.querySelector('#subscribe-btn').disabled")
    assert errors == [], f"console errors on load: {errors}"
    assert await page.is_hidden("#error")

    # Subscribe: the page posts the (injected) subscription; the welcome is pushed.
    await page.click("#subscribe-btn")
    await page.wait_for_function(
        "() => document.querySelector('#subscription-status').dataset.status === 'subscribed'"
    )
    notification_id = (await page.text_content("#notification-id") or "").strip()
    assert notification_id, "no notification id shown"
    assert await page.is_visible("#notification-id")
    await page.wait_for_function(
        "() => document.querySelector('#notification-status').dataset.status === 'sent'"
    )
    assert await page.text_content("#subscription-status") == "Subscription received and queued."
    calls = await page.evaluate("() => window.__subscribeCalls")
    assert len(calls) == 1 and calls[0]["userVisibleOnly"] is True
    server_key = base64.urlsafe_b64decode(vapid.public + "==")
    assert bytes(calls[0]["applicationServerKey"]) == server_key
    record = await notification_record(origin, notification_id)
    assert record is not None and record["status"] == "sent"
    received = await pushserver.messages(client_hash)
    assert [m["notification_id"] for m in received] == [notification_id]
    welcome = received[0]
    assert welcome["title"] == WELCOME_TITLE

    # Push: hand the decrypted welcome to the service worker as the browser would.
    scope = f"{origin}/web_push_test/"

    def registration_id() -> str | None:
        for rid, registration in registrations.items():
            if registration["scopeURL"] == scope and not registration["isDeleted"]:
                return rid
        return None

    rid = await wait_until(registration_id, message=f"a service worker registration for {scope}")
    await cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": origin, "registrationId": rid, "data": orjson.dumps(welcome).decode()},
    )

    item = page.locator("#received-list li.received-push")
    await item.first.wait_for(state="visible")
    assert await item.count() == 1
    text = await item.first.inner_text()
    assert WELCOME_TITLE in text
    assert welcome["body"] in text
    assert notification_id in text
    assert await item.first.get_attribute("data-notification-id") == notification_id
    assert await page.is_hidden("#received-empty")
    link = item.first.locator("a.push-action-url")
    assert await link.get_attribute("href") == welcome["action_url"]

    shown = await page.evaluate(
        """async () => {
          const registration = await navigator.serviceWorker.ready;
          const list = await registration.getNotifications();
          return list.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data }));
        }"""
    )
    assert len(shown) == 1, shown
    assert shown[0]["title"] == WELCOME_TITLE
    assert shown[0]["body"] == welcome["body"]
    assert shown[0]["tag"] == "welcome"
    assert shown[0]["data"]["notification_id"] == notification_id

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "web_push_test.png"), full_page=True)
    await asyncio.wait_for(context.close(), 10)
