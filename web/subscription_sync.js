// Keeping the server's copy of this browser's push subscription current, shared by the
// test page (a <script>) and its service worker (importScripts): the /subscribe and
// DELETE /subscribe bodies, which old endpoint a new subscription replaces, the retry
// policy of the worker's POST, and the IndexedDB record of what was last synced.
//
// Everything but the IndexedDB record is pure (fetch and sleep are passed in), so a test
// can run it with doubles: window.SubscriptionSync / self.SubscriptionSync.
'use strict';

((root) => {
  // The worker's POST runs inside event.waitUntil, and browsers stop a worker after
  // 30 s (Firefox) to 5 min (Chromium) of extended life: 5 attempts with waits of 1, 2,
  // 4, 8 s (15 s in all; Retry-After is capped the same), each attempt cut at 10 s.
  const RETRY = Object.freeze({
    attempts: 5, baseDelayMs: 1000, factor: 2, maxDelayMs: 8000, timeoutMs: 10000,
  });
  const DB_NAME = 'push_service';
  const DB_STORE = 'sync';
  const DB_KEY = 'subscription';

  function isObject(value) {
    return value !== null && typeof value === 'object' && !Array.isArray(value);
  }

  // A PushSubscription (or its JSON, or a test double) -> its JSON; null if it has no endpoint.
  function subscriptionJson(subscription) {
    if (!subscription) return null;
    const json = typeof subscription.toJSON === 'function' ? subscription.toJSON() : subscription;
    return isObject(json) && typeof json.endpoint === 'string' && json.endpoint ? json : null;
  }

  function authOf(json) {
    const keys = json && isObject(json.keys) ? json.keys : {};
    return typeof keys.auth === 'string' && keys.auth ? keys.auth : null;
  }

  // The subscription the new one replaces: the event's oldSubscription, else (Firefox often
  // leaves it out) the record of the last sync. None when it is the same endpoint: that is a
  // re-sync, not a replacement.
  function replaced(newEndpoint, oldSubscription, stored) {
    const old = subscriptionJson(oldSubscription);
    if (old) {
      return old.endpoint === newEndpoint ? null : { endpoint: old.endpoint, auth: authOf(old) };
    }
    if (!isObject(stored) || typeof stored.endpoint !== 'string' || !stored.endpoint) return null;
    if (stored.endpoint === newEndpoint) return null;
    return { endpoint: stored.endpoint, auth: typeof stored.auth === 'string' ? stored.auth : null };
  }

  // The POST /subscribe body (lifecycle spec): the subscription, plus old_endpoint and
  // old_keys.auth (the old one's proof of ownership) when it replaces another.
  function subscribeBody({ subscription, oldSubscription = null, stored = null, userId = null }) {
    const json = subscriptionJson(subscription);
    if (!json) throw new Error('The push subscription has no endpoint.');
    const body = {
      endpoint: json.endpoint,
      expirationTime: json.expirationTime === undefined ? null : json.expirationTime,
      keys: json.keys,
    };
    if (userId) body.user_id = userId;
    const old = replaced(json.endpoint, oldSubscription, stored);
    if (old) {
      body.old_endpoint = old.endpoint;
      if (old.auth) body.old_keys = { auth: old.auth };
    }
    return body;
  }

  // The DELETE /subscribe body: the endpoint and its own auth secret as the proof.
  function deleteBody(subscription) {
    const json = subscriptionJson(subscription);
    const auth = authOf(json);
    if (!json || !auth) throw new Error('The push subscription has no endpoint or auth secret.');
    return { endpoint: json.endpoint, keys: { auth } };
  }

  // What to remember after a successful sync (the worker reads it back on the next change).
  function storedRecord(body) {
    const record = { endpoint: body.endpoint, auth: authOf(body) };
    if (body.user_id) record.user_id = body.user_id;
    return record;
  }

  // Network errors, timeouts, 408, 425, 429 and 5xx may pass; other answers will not.
  function retryable(status) {
    return status === 0 || status === 408 || status === 425 || status === 429 || status >= 500;
  }

  // The wait before attempt `attempt + 1` (attempt counts from 1): the server's
  // Retry-After (seconds) when it sent one, else exponential; both capped.
  function retryDelay(attempt, retryAfter, policy = RETRY) {
    const seconds = Number.parseInt(retryAfter, 10);
    const wanted = Number.isFinite(seconds) && seconds >= 0
      ? seconds * 1000
      : policy.baseDelayMs * policy.factor ** (attempt - 1);
    return Math.min(wanted, policy.maxDelayMs);
  }

  const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

  async function readJson(response) {
    const text = await response.text().catch(() => '');
    try {
      return text ? JSON.parse(text) : null;
    } catch (_) {
      return null;
    }
  }

  // One request with a timeout -> {status, body, retryAfter}; status 0 for a network error.
  async function attempt(fetchFn, url, init, timeoutMs) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      const response = await fetchFn(url, { ...init, signal: controller.signal });
      const body = await readJson(response);
      return { status: response.status, body, retryAfter: response.headers.get('Retry-After') };
    } catch (err) {
      return { status: 0, body: null, retryAfter: null, error: String((err && err.message) || err) };
    } finally {
      clearTimeout(timer);
    }
  }

  // Sends JSON, retrying what may pass later; never throws. Resolves to
  // {ok, status, body, attempts, waits} (waits: the delays slept, for the record).
  async function sendJson(url, method, payload, options = {}) {
    const {
      fetchFn = (...args) => root.fetch(...args), sleepFn = sleep, policy = RETRY,
      credentials = 'omit',
    } = options;
    const init = {
      method,
      credentials,
      cache: 'no-store',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(payload),
    };
    const waits = [];
    for (let n = 1; ; n += 1) {
      const result = await attempt(fetchFn, url, init, policy.timeoutMs);
      const ok = result.status >= 200 && result.status < 300;
      if (ok || !retryable(result.status) || n >= policy.attempts) {
        return { ok, status: result.status, body: result.body, attempts: n, waits, error: result.error };
      }
      const wait = retryDelay(n, result.retryAfter, policy);
      waits.push(wait);
      await sleepFn(wait);
    }
  }

  function base64UrlToBytes(value) {
    const b64 = String(value || '').trim().replace(/=+$/, '').replace(/-/g, '+').replace(/_/g, '/');
    const raw = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  }

  // ------------------------------------------------------------ the last synced record

  function openDb() {
    return new Promise((resolve, reject) => {
      const request = root.indexedDB.open(DB_NAME, 1);
      request.onupgradeneeded = () => request.result.createObjectStore(DB_STORE);
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }

  async function withStore(mode, use) {
    const db = await openDb();
    try {
      return await new Promise((resolve, reject) => {
        const tx = db.transaction(DB_STORE, mode);
        const request = use(tx.objectStore(DB_STORE));
        tx.oncomplete = () => resolve(request.result);
        tx.onerror = () => reject(tx.error);
        tx.onabort = () => reject(tx.error);
      });
    } finally {
      db.close();
    }
  }

  // The store is a convenience (a fallback for a missing oldSubscription): a browser
  // without IndexedDB (some private modes) just has no record.
  const store = Object.freeze({
    async load() {
      try {
        const record = await withStore('readonly', (s) => s.get(DB_KEY));
        return isObject(record) ? record : null;
      } catch (_) {
        return null;
      }
    },
    async save(record) {
      try {
        await withStore('readwrite', (s) => s.put(record, DB_KEY));
      } catch (_) { /* no record: the next change sends no old_endpoint */ }
    },
    async clear() {
      try {
        await withStore('readwrite', (s) => s.delete(DB_KEY));
      } catch (_) { /* nothing stored */ }
    },
  });

  root.SubscriptionSync = Object.freeze({
    RETRY,
    subscriptionJson,
    subscribeBody,
    deleteBody,
    storedRecord,
    retryable,
    retryDelay,
    sendJson,
    base64UrlToBytes,
    store,
  });
})(typeof self !== 'undefined' ? self : globalThis);
