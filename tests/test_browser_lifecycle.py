"""The browser's side of the subscription lifecycle, in headless Chromium.

The page re-syncs its subscription on every load and unsubscribes with
`DELETE /subscribe`; the service worker sends a renewed subscription
(`pushsubscriptionchange`) as the replacement of the old one. A new subscription goes
to the real service (202 and a welcome); what the lifecycle spec adds (200 for a known
or replaced one, DELETE) is answered by `SpecServer` through Playwright's routing, which
also sees the worker's requests, so every body and header the browser sends is checked.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from tests.browser_support import MARKS, BrowserPage, chromium, open_test_page, wait_for_worker
from tests.conftest import ServiceFactory
from tests.support import PushServer, VapidPair, wait_until

pytestmark = MARKS

COOKIE = {"name": "session", "value": "page-session-cookie"}
REPLACED = "Subscription replaced; nothing queued."
KNOWN = "Subscription already registered; nothing queued."


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium() as launched:
        yield launched


@dataclass
class Captured:
    method: str
    body: Any
    headers: dict[str, str]
    from_worker: bool


def device_id(endpoint: str) -> str:
    return "dev-" + hashlib.sha256(endpoint.encode()).hexdigest()[:16]


@dataclass
class SpecServer:
    """`/subscribe` as /work/lifecycle-spec.md answers it, recording every request.

    A new endpoint goes on to the real service (202, welcome queued) when
    `passthrough_new`; `failures` ("abort": a network error, "503") come first.
    """

    passthrough_new: bool = True
    failures: list[str] = field(default_factory=list)
    known: dict[str, str] = field(default_factory=dict)  # endpoint -> auth secret
    requests: list[Captured] = field(default_factory=list)

    def of(self, method: str) -> list[Captured]:
        return [r for r in self.requests if r.method == method]

    async def handle(self, route: Any, request: Any) -> None:
        body = orjson.loads(request.post_data or "null")
        headers = await request.all_headers()
        self.requests.append(
            Captured(request.method, body, headers, request.service_worker is not None)
        )
        if self.failures:
            if self.failures.pop(0) == "abort":
                await route.abort("connectionreset")
            else:
                detail = {"error": "broker_unavailable", "detail": "try again shortly"}
                await route.fulfill(status=503, json=detail, headers={"Retry-After": "0"})
            return
        if request.method == "DELETE":
            await route.fulfill(**self.delete(body))
        elif body["endpoint"] in self.known or body.get("old_endpoint"):
            await route.fulfill(**self.replace(body))
        elif self.passthrough_new:
            await route.continue_()
            self.known[body["endpoint"]] = body["keys"]["auth"]
        else:
            await route.fulfill(status=422, json={"error": "test", "detail": "unexpected"})

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        old = body.get("old_endpoint")
        replaced = device_id(old) if old and self.known.pop(old, None) else None
        self.known[body["endpoint"]] = body["keys"]["auth"]
        answer = {
            "status": "ok",
            "message": REPLACED if old else KNOWN,
            "notification_id": None,
            "device": device_id(body["endpoint"]),
            "created": False,
            "replaced": replaced,
        }
        return {"status": 200, "json": answer}

    def delete(self, body: dict[str, Any]) -> dict[str, Any]:
        endpoint = body["endpoint"]
        if self.known.get(endpoint) != body["keys"]["auth"]:
            return {"status": 404, "json": {"error": "not_found", "detail": "no such subscription"}}
        del self.known[endpoint]
        answer = {"status": "ok", "message": "Subscription removed.", "device": device_id(endpoint)}
        return {"status": 200, "json": answer}


@dataclass
class Lifecycle:
    service_url: str
    subscriptions: list[dict[str, Any]]
    spec: SpecServer


@pytest.fixture
async def lifecycle(
    service_factory: ServiceFactory, pushserver: PushServer, vapid: VapidPair
) -> Lifecycle:
    service = await service_factory()
    subscriptions = [(await pushserver.subscribe(vapid.public))[0] for _ in range(4)]
    return Lifecycle(service.base_url, subscriptions, SpecServer())


def page_session(browser: Any, lc: Lifecycle) -> Any:
    """The test page with a session cookie set and /subscribe routed through the spec server."""

    async def prepare(context: Any) -> None:
        await context.add_cookies([{**COOKIE, "url": lc.service_url}])
        await context.route("**/subscribe", lc.spec.handle)

    return open_test_page(browser, lc.service_url, lc.subscriptions[0], prepare)


async def status_of(page: Any, selector: str, status: str) -> str:
    await page.wait_for_function(
        "([s, v]) => document.querySelector(s).dataset.status === v", arg=[selector, status]
    )
    return (await page.text_content(selector) or "").strip()


async def subscribe_on_page(tp: BrowserPage) -> None:
    await tp.page.wait_for_function("() => !document.querySelector('#subscribe-btn').disabled")
    await tp.page.click("#subscribe-btn")
    assert await status_of(tp.page, "#sync-status", "created") == (
        "HTTP 202: Subscription received and queued."
    )


# --- the pure logic (web/subscription_sync.js), run in the page ---------------------------

PURE_LOGIC = """async ([fresh, old]) => {
  const S = window.SubscriptionSync;
  const live = (s) => ({ endpoint: s.endpoint, toJSON: () => s });  // like a PushSubscription
  const storedOld = { endpoint: old.endpoint, auth: old.keys.auth };
  const bodies = {
    replacement: S.subscribeBody({ subscription: live(fresh), oldSubscription: live(old) }),
    fromStored: S.subscribeBody({ subscription: live(fresh), stored: storedOld }),
    storedIsCurrent: S.subscribeBody(
      { subscription: fresh, stored: S.storedRecord(fresh), userId: 'u-1' }),
    sameEndpoint: S.subscribeBody(
      { subscription: fresh, oldSubscription: live(fresh), stored: storedOld }),
    delete: S.deleteBody(live(fresh)),
  };
  const run = async (answers) => {
    const calls = [];
    const waits = [];
    const fetchFn = async (url, init) => {
      const { method, credentials } = init;
      calls.push({ url, method, credentials, body: JSON.parse(init.body) });
      const next = answers.shift();
      if (next === 'network') throw new TypeError('Failed to fetch');
      const answer = JSON.stringify({ n: calls.length });
      return new Response(answer, { status: next[0], headers: next[1] || {} });
    };
    const sleepFn = async (ms) => { waits.push(ms); };
    const result = await S.sendJson('/subscribe', 'POST', bodies.replacement, { fetchFn, sleepFn });
    return { result, calls, slept: waits };
  };
  return {
    bodies,
    flaky: await run(['network', [503], [200]]),
    refused: await run([[422]]),
    down: await run([[503], [502], [503], [504], [503]]),
    throttled: await run([[429, { 'Retry-After': '3' }], [202]]),
  };
}"""


async def test_subscription_sync_logic_builds_bodies_and_retries(
    browser: Any, lifecycle: Lifecycle
) -> None:
    fresh, old = lifecycle.subscriptions[:2]
    async with page_session(browser, lifecycle) as tp:
        out = await tp.page.evaluate(PURE_LOGIC, [fresh, old])
    bodies = out["bodies"]
    assert bodies["replacement"] == {
        **fresh,
        "old_endpoint": old["endpoint"],
        "old_keys": {"auth": old["keys"]["auth"]},
    }
    # No oldSubscription (Firefox): the last synced record names the replaced one.
    assert bodies["fromStored"] == bodies["replacement"]
    assert bodies["storedIsCurrent"] == {**fresh, "user_id": "u-1"}
    assert bodies["sameEndpoint"] == fresh
    assert bodies["delete"] == {
        "endpoint": fresh["endpoint"],
        "keys": {"auth": fresh["keys"]["auth"]},
    }

    flaky = out["flaky"]
    assert flaky["result"]["ok"] is True and flaky["result"]["attempts"] == 3
    assert flaky["slept"] == [1000, 2000] == flaky["result"]["waits"]
    assert all(c["credentials"] == "omit" and c["method"] == "POST" for c in flaky["calls"])
    assert all(c["body"] == bodies["replacement"] for c in flaky["calls"])
    assert out["refused"]["result"]["attempts"] == 1 and out["refused"]["result"]["ok"] is False
    assert out["refused"]["result"]["status"] == 422
    down = out["down"]["result"]
    assert (down["ok"], down["status"], down["attempts"]) == (False, 503, 5)
    assert down["waits"] == [1000, 2000, 4000, 8000]
    assert out["throttled"]["slept"] == [3000] and out["throttled"]["result"]["status"] == 202
    assert tp.errors == [], tp.errors


# --- the service worker's pushsubscriptionchange ----------------------------------------

CHANGE = """async ([oldSub, newSub]) => {
  const live = (s) => s && { endpoint: s.endpoint, toJSON: () => s };
  const change = { oldSubscription: live(oldSub), newSubscription: live(newSub) };
  return self.handleSubscriptionChange(change);
}"""

# Chromium's worker has no push service to subscribe with: record the call, hand out `fake`.
STUB_SUBSCRIBE = """(fake) => {
  self.__subscribeCalls = [];
  PushManager.prototype.subscribe = function (options) {
    self.__subscribeCalls.push({ userVisibleOnly: options.userVisibleOnly,
      key: Array.from(new Uint8Array(options.applicationServerKey)) });
    return Promise.resolve({ endpoint: fake.endpoint, toJSON: () => fake });
  };
}"""

STORED = "() => self.SubscriptionSync.store.load()"


def replacement(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    return {**new, "old_endpoint": old["endpoint"], "old_keys": {"auth": old["keys"]["auth"]}}


def from_worker_without_cookies(request: Captured) -> bool:
    return request.from_worker and "cookie" not in request.headers


async def test_worker_sends_the_renewed_subscription_as_a_replacement(
    browser: Any, lifecycle: Lifecycle, vapid: VapidPair
) -> None:
    a, b, c, d = lifecycle.subscriptions
    spec = lifecycle.spec
    spec.known[a["endpoint"]] = a["keys"]["auth"]
    async with page_session(browser, lifecycle) as tp:
        worker = await tp.worker()
        # newSubscription and oldSubscription given.
        result = await worker.evaluate(CHANGE, [a, b])
        assert (result["ok"], result["status"], result["attempts"]) == (True, 200, 1)
        assert result["body"]["replaced"] == device_id(a["endpoint"])
        assert spec.requests[-1].body == replacement(b, a)
        assert from_worker_without_cookies(spec.requests[-1]), spec.requests[-1]
        assert await worker.evaluate(STORED) == {
            "endpoint": b["endpoint"],
            "auth": b["keys"]["auth"],
        }

        # No oldSubscription: the endpoint (and secret) stored at the last sync stand in.
        await worker.evaluate(CHANGE, [None, c])
        assert spec.requests[-1].body == replacement(c, b)

        # No newSubscription: subscribe again with the server's current key.
        await worker.evaluate(STUB_SUBSCRIBE, d)
        result = await worker.evaluate(CHANGE, [c, None])
        assert result["ok"] is True and spec.requests[-1].body == replacement(d, c)
        calls = await worker.evaluate("() => self.__subscribeCalls")
        assert calls == [
            {"userVisibleOnly": True, "key": list(base64.urlsafe_b64decode(vapid.public + "="))}
        ]

        # A failed POST is retried: a network error (waits 1 s), a 503 with Retry-After: 0.
        spec.failures = ["abort", "503"]
        before = len(spec.requests)
        result = await worker.evaluate(CHANGE, [d, a])
        assert (result["ok"], result["attempts"], result["waits"]) == (True, 3, [1000, 0])
        assert [r.body for r in spec.requests[before:]] == [replacement(a, d)] * 3
        assert all(from_worker_without_cookies(r) for r in spec.requests)
        assert tp.errors == [], tp.errors


# Script-made events: waitUntil refuses them (untrusted), the handler runs all the same.
DISPATCH_CONSTRUCTED = """() => {
  self.dispatchEvent(new PushSubscriptionChangeEvent('pushsubscriptionchange', {}));
}"""
DISPATCH_WITH = """([oldSub, newSub]) => {
  const event = new ExtendableEvent('pushsubscriptionchange');
  const live = (s) => ({ endpoint: s.endpoint, toJSON: () => s });
  Object.defineProperty(event, 'oldSubscription', { value: live(oldSub) });
  Object.defineProperty(event, 'newSubscription', { value: live(newSub) });
  self.dispatchEvent(event);
}"""


async def test_pushsubscriptionchange_event_posts_to_the_server_and_tells_the_page(
    browser: Any, lifecycle: Lifecycle
) -> None:
    a, b, c, _ = lifecycle.subscriptions
    spec = lifecycle.spec
    async with page_session(browser, lifecycle) as tp:
        await subscribe_on_page(tp)  # the page's POST: the real service, 202
        worker = await tp.worker()
        assert await worker.evaluate(STORED) == {
            "endpoint": a["endpoint"],
            "auth": a["keys"]["auth"],
        }
        # The event as Chromium would build it when the push service drops the subscription
        # (neither subscription given): re-subscribe; the stored endpoint is the old one.
        await worker.evaluate(STUB_SUBSCRIBE, b)
        await worker.evaluate(DISPATCH_CONSTRUCTED)
        await wait_until(lambda: len(spec.of("POST")) == 2, message="the worker's POST")
        posted = spec.of("POST")[1]
        assert posted.body == replacement(b, a) and from_worker_without_cookies(posted)
        assert await status_of(tp.page, "#sync-status", "synced") == f"HTTP 200: {REPLACED}"
        assert await status_of(tp.page, "#subscription-status", "subscribed") == (
            "The browser renewed the push subscription; the service worker sent the new one"
            " to the server."
        )
        # Firefox's shape: both subscriptions on the event.
        await worker.evaluate(DISPATCH_WITH, [b, c])
        await wait_until(lambda: len(spec.of("POST")) == 3, message="the worker's second POST")
        assert spec.of("POST")[2].body == replacement(c, b)
        assert spec.known == {c["endpoint"]: c["keys"]["auth"]}
        assert tp.errors == [], tp.errors


# --- the page: re-sync on load, unsubscribe ----------------------------------------------


async def test_page_resyncs_on_every_load_and_unsubscribes_with_delete(
    browser: Any, lifecycle: Lifecycle
) -> None:
    a = lifecycle.subscriptions[0]
    spec = lifecycle.spec
    async with page_session(browser, lifecycle) as tp:
        page = tp.page
        await subscribe_on_page(tp)
        assert (await page.text_content("#notification-id") or "").strip()

        # A reload sends the subscription again: 200, nothing queued, nothing to follow.
        await page.reload()
        await wait_for_worker(page)
        assert await status_of(page, "#sync-status", "synced") == f"HTTP 200: {KNOWN}"
        assert await status_of(page, "#notification-status", "none") == (
            "No welcome: the server already had this subscription."
        )
        assert await page.text_content("#notification-id") == ""
        posts = spec.of("POST")
        assert [p.body for p in posts] == [a, a]
        assert all(not p.from_worker and "cookie" in p.headers for p in posts)

        # The stored endpoint differs (renewed while no worker ran): sent as a replacement.
        gone = {"endpoint": a["endpoint"] + "-before", "auth": "b2xkLWF1dGgtc2VjcmV0"}
        await page.evaluate("(r) => window.SubscriptionSync.store.save(r)", gone)
        await page.reload()
        await wait_for_worker(page)
        assert await status_of(page, "#sync-status", "synced") == f"HTTP 200: {REPLACED}"
        assert spec.of("POST")[2].body == {
            **a,
            "old_endpoint": gone["endpoint"],
            "old_keys": {"auth": gone["auth"]},
        }

        # Unsubscribe: DELETE with the auth secret and no cookies, then the browser's own.
        await page.wait_for_function("() => !document.querySelector('#unsubscribe-btn').disabled")
        await page.click("#unsubscribe-btn")
        assert await status_of(page, "#subscription-status", "unsubscribed") == (
            "Unsubscribed: the server removed the subscription and this browser dropped it."
        )
        assert await status_of(page, "#sync-status", "removed") == "HTTP 200: Subscription removed."
        (deleted,) = spec.of("DELETE")
        assert deleted.body == {"endpoint": a["endpoint"], "keys": {"auth": a["keys"]["auth"]}}
        assert "cookie" not in deleted.headers and not deleted.from_worker
        assert await page.evaluate("() => window.__unsubscribeCalls") == 1
        assert await page.evaluate("() => window.SubscriptionSync.store.load()") is None
        assert spec.known == {}
        assert await page.is_disabled("#unsubscribe-btn")
        assert tp.errors == [], tp.errors
