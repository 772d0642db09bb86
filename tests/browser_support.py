"""The test page in headless Chromium: the browser, a fake PushManager, a DevTools session.

Chromium cannot reach its own push service here (and Playwright contexts are
incognito), so the page gets a web-push-testing subscription in place of
`PushManager.subscribe`, and push events reach the service worker through the
DevTools protocol (PITFALLS "Web push").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support import wait_until

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
WAIT_MS = 20_000
MARKS = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
]

# Runs before the page's scripts: a PushManager whose subscribe() hands out the
# web-push-testing subscription (and records how the page called it). Like a real one it
# keeps the subscription across reloads (localStorage of the context) until unsubscribe().
FAKE_PUSH_MANAGER = """
(() => {
  const subscription = %s;
  const FLAG = 'fake-push-subscribed';
  window.__subscribeCalls = [];
  window.__unsubscribeCalls = 0;
  const fake = {
    endpoint: subscription.endpoint,
    expirationTime: null,
    options: { userVisibleOnly: true, applicationServerKey: null },
    toJSON() { return subscription; },
    getKey() { return null; },
    unsubscribe() {
      window.__unsubscribeCalls += 1;
      localStorage.removeItem(FLAG);
      return Promise.resolve(true);
    },
  };
  if (typeof PushManager === 'undefined') return;
  PushManager.prototype.subscribe = function (options) {
    const key = options && options.applicationServerKey;
    window.__subscribeCalls.push({
      userVisibleOnly: Boolean(options && options.userVisibleOnly),
      applicationServerKey: key ? Array.from(new Uint8Array(key.buffer || key)) : null,
    });
    fake.options.applicationServerKey = key ? key.buffer || key : null;
    localStorage.setItem(FLAG, '1');
    return Promise.resolve(fake);
  };
  PushManager.prototype.getSubscription = function () {
    return Promise.resolve(localStorage.getItem(FLAG) ? fake : null);
  };
})();
"""


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class BrowserPage:
    """The test page in a fresh context, with a DevTools session to deliver pushes."""

    origin: str
    context: Any
    page: Any
    cdp: Any
    errors: list[str]
    registrations: dict[str, dict[str, Any]]

    async def registration_id(self) -> str:
        scope = f"{self.origin}/web_push_test/"

        def find() -> str | None:
            for rid, registration in self.registrations.items():
                if registration["scopeURL"] == scope and not registration["isDeleted"]:
                    return rid
            return None

        found: str = await wait_until(find, message=f"a service worker registration for {scope}")
        return found

    async def deliver(self, payload: dict[str, Any]) -> None:
        """Hand a decrypted payload to the service worker as the browser would (a push event)."""
        await self.cdp.send(
            "ServiceWorker.deliverPushMessage",
            {
                "origin": self.origin,
                "registrationId": await self.registration_id(),
                "data": orjson.dumps(payload).decode(),
            },
        )

    async def notifications(self) -> list[dict[str, Any]]:
        """What the service worker's registration shows, in the order shown."""
        shown: list[dict[str, Any]] = await self.page.evaluate(
            """async () => {
              const registration = await navigator.serviceWorker.ready;
              const list = await registration.getNotifications();
              return list.map((n) => ({ title: n.title, body: n.body, tag: n.tag,
                data: n.data, actions: (n.actions || []).map((a) => ({ ...a })) }));
            }"""
        )
        return shown

    async def worker(self) -> Any:
        """The page's service worker, to evaluate code in."""
        found = await wait_until(
            lambda: next(
                (w for w in self.context.service_workers if w.url.endswith("/sw.js")), None
            ),
            message="the page's service worker",
        )
        return found


async def wait_for_worker(page: Any) -> None:
    await page.wait_for_function(
        "() => document.querySelector('#sw-status').dataset.status === 'ready'"
    )


@contextlib.asynccontextmanager
async def open_test_page(
    browser: Any,
    origin: str,
    subscription: dict[str, Any],
    prepare: Callable[[Any], Awaitable[None]] | None = None,
) -> AsyncIterator[BrowserPage]:
    """The page loaded and its worker ready; `prepare(context)` runs before the load."""
    context = await browser.new_context()
    try:
        await context.grant_permissions(["notifications"], origin=origin)
        await context.add_init_script(
            script=FAKE_PUSH_MANAGER % orjson.dumps(subscription).decode()
        )
        if prepare is not None:
            await prepare(context)
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
        await wait_for_worker(page)
        yield BrowserPage(origin, context, page, cdp, errors, registrations)
    finally:
        await asyncio.wait_for(context.close(), 10)
