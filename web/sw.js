// Service worker of the push_service browser test page (scope /web_push_test/).
//
// Shows each push as a notification, forwards it to open windows of the page, posts
// the payload's receipt URL when it is shown, clicked or closed, and on a click opens the clicked action's URL, else the notification's (http/https
// only); on pushsubscriptionchange it sends the new subscription to the server as the
// replacement of the old one (subscription_sync.js). Two payload formats arrive:
//   classic      {"notification_id", "title", "body", "action_url", ...} (queue names)
//   declarative  {"web_push": 8030, "notification": {"title", "navigate", ...},
//                "app_badge", "mutable"} (W3C Push API). Browsers that implement it
//                show it themselves; Chromium does not yet, so it comes here too.
'use strict';

const DEFAULT_TITLE = 'Notification';
const DECLARATIVE_PUSH = 8030;
const VAPID_KEY_URL = '/vapid_public_key';
const SUBSCRIBE_URL = '/subscribe';

// SubscriptionSync: the /subscribe bodies, the retry policy and the last synced record.
importScripts('subscription_sync.js');

self.addEventListener('install', (event) => {
  event.waitUntil(self.skipWaiting());
});

self.addEventListener('activate', (event) => {
  event.waitUntil(self.clients.claim());
});

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function optionalString(value) {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

// event.data -> payload object; never throws.
function parsePushData(data) {
  if (!data) return {};
  let text = '';
  try {
    text = data.text();
  } catch (_) {
    return {};
  }
  try {
    const parsed = JSON.parse(text);
    if (isPlainObject(parsed)) return parsed;
    return { body: typeof parsed === 'string' ? parsed : text };
  } catch (_) {
    return { body: text };
  }
}

// Resolves an action URL and admits only http(s); anything else (javascript:,
// data:, malformed) gives null.
function safeHttpUrl(value) {
  if (typeof value !== 'string' || value === '') return null;
  try {
    const url = new URL(value, self.location.origin);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch (_) {
    return null;
  }
}

async function broadcast(message) {
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  for (const client of windows) {
    try {
      client.postMessage(message);
    } catch (err) {
      console.warn('push_service sw: postMessage to a window failed:', err && err.message);
    }
  }
}

// The notification fields of either format under one set of names (the declarative
// spelling, which is also NotificationOptions'); unknown or mistyped values are dropped.
function normalise(payload) {
  const declarative = payload.web_push === DECLARATIVE_PUSH && isPlainObject(payload.notification);
  const n = declarative ? payload.notification : payload;
  const data = isPlainObject(n.data) ? n.data : {};
  const navigate = declarative ? n.navigate : payload.action_url;
  const actions = Array.isArray(n.actions) ? n.actions.filter((a) => isPlainObject(a)
    && optionalString(a.action) && optionalString(a.title)) : [];
  return {
    format: declarative ? 'declarative' : 'classic',
    notification_id: declarative ? data.notification_id : payload.notification_id,
    title: optionalString(n.title) || DEFAULT_TITLE,
    body: typeof n.body === 'string' ? n.body : '',
    action_url: typeof navigate === 'string' ? navigate : undefined,
    actions: actions.map((a) => ({
      action: a.action, title: a.title, navigate: optionalString(a.navigate), icon: optionalString(a.icon),
    })),
    data,
    icon: optionalString(n.icon),
    badge: optionalString(n.badge),
    image: optionalString(n.image),
    tag: optionalString(n.tag),
    lang: optionalString(n.lang),
    dir: optionalString(n.dir),
    requireInteraction: declarative ? n.requireInteraction : payload.require_interaction,
    renotify: n.renotify,
    silent: n.silent,
    vibrate: Array.isArray(n.vibrate) ? n.vibrate.filter((v) => typeof v === 'number') : undefined,
    timestamp: typeof n.timestamp === 'number' ? n.timestamp : undefined,
    app_badge: payload.app_badge,
    receipt: optionalString(payload.receipt),
  };
}

// Tells the service what became of the push: POST {"event"} to the payload's receipt
// URL (relative ones resolve against this worker's origin), without cookies. A
// text/plain body needs no CORS preflight should the URL be on another origin.
function sendReceipt(receipt, kind) {
  const url = safeHttpUrl(receipt);
  if (!url) return Promise.resolve();
  return fetch(url, {
    method: 'POST',
    credentials: 'omit',
    headers: { 'Content-Type': 'text/plain' },
    body: JSON.stringify({ event: kind }),
  }).catch((err) => {
    console.warn('push_service sw: receipt failed:', err && err.message);
  });
}

function notificationOptions(shown) {
  const actionUrls = {};
  for (const a of shown.actions) if (a.navigate) actionUrls[a.action] = a.navigate;
  const data = { ...shown.data, action_urls: actionUrls };
  if (shown.action_url !== undefined) data.action_url = shown.action_url;
  if (shown.notification_id !== undefined) data.notification_id = shown.notification_id;
  if (shown.receipt !== undefined) data.receipt = shown.receipt;
  const options = { body: shown.body, data };
  for (const name of ['icon', 'badge', 'image', 'tag', 'lang', 'dir']) {
    if (shown[name]) options[name] = shown[name];
  }
  for (const name of ['requireInteraction', 'silent']) {
    if (typeof shown[name] === 'boolean') options[name] = shown[name];
  }
  // showNotification throws a TypeError for renotify without a tag, and for vibrate
  // with silent: drop what would make the whole notification fail.
  if (shown.renotify === true && options.tag) options.renotify = true;
  if (shown.vibrate && options.silent !== true) options.vibrate = shown.vibrate;
  if (shown.timestamp !== undefined) options.timestamp = shown.timestamp;
  if (shown.actions.length) {
    options.actions = shown.actions.map((a) => (a.icon
      ? { action: a.action, title: a.title, icon: a.icon } : { action: a.action, title: a.title }));
  }
  return options;
}

function setAppBadge(count) {
  const nav = self.navigator;
  if (typeof count !== 'number' || !nav || typeof nav.setAppBadge !== 'function') return Promise.resolve();
  return nav.setAppBadge(count).catch((err) => {
    console.warn('push_service sw: setAppBadge failed:', err && err.message);
  });
}

// waitUntil throws for an event that script dispatched (untrusted), as the browser
// test does to click a notification; the work itself runs either way.
function extendLifetime(event, promise) {
  try {
    event.waitUntil(promise);
  } catch (err) {
    console.warn('push_service sw: could not extend the event:', err && err.message);
  }
}

self.addEventListener('push', (event) => {
  const shown = normalise(parsePushData(event.data));
  const displayed = self.registration
    .showNotification(shown.title, notificationOptions(shown))
    .catch((err) => {
      // E.g. permission revoked; still forward the payload to the page.
      console.warn('push_service sw: showNotification failed:', err && err.message);
    });
  const forwarded = broadcast({ type: 'push', payload: shown, received_at: Date.now() }).catch((err) => {
    console.warn('push_service sw: forwarding the push failed:', err && err.message);
  });
  const delivered = displayed.then(() => sendReceipt(shown.receipt, 'delivered'));
  event.waitUntil(Promise.all([delivered, forwarded, setAppBadge(shown.app_badge)]));
});

function receiptOf(notification) {
  return isPlainObject(notification.data) ? notification.data.receipt : undefined;
}

self.addEventListener('notificationclose', (event) => {
  extendLifetime(event, sendReceipt(receiptOf(event.notification), 'closed'));
});

async function openOrFocus(target) {
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  for (const client of windows) {
    if (client.url === target && typeof client.focus === 'function') {
      try {
        return await client.focus();
      } catch (_) {
        break; // not allowed to focus: open a new window instead
      }
    }
  }
  if (self.clients.openWindow) return self.clients.openWindow(target);
  return undefined;
}

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const clicked = sendReceipt(receiptOf(event.notification), 'clicked');
  const data = isPlainObject(event.notification.data) ? event.notification.data : {};
  const actionUrls = isPlainObject(data.action_urls) ? data.action_urls : {};
  const chosen = event.action && actionUrls[event.action] ? actionUrls[event.action] : data.action_url;
  const target = safeHttpUrl(chosen);
  extendLifetime(event, target ? Promise.all([clicked, openOrFocus(target)]) : clicked);
});

// The push service replaced or expired the subscription: take the new one (or subscribe
// again with the server's current key) and send it to the server as the replacement of
// the old one. No cookies: this event often arrives with none, and the subscription
// itself is the proof (old_keys.auth). Resolves to the POST's outcome; never throws.
async function resubscribe() {
  const response = await fetch(VAPID_KEY_URL, { cache: 'no-store', credentials: 'omit' });
  if (!response.ok) throw new Error(`GET ${VAPID_KEY_URL} answered ${response.status}`);
  const body = await response.json();
  const manager = self.registration.pushManager;
  const options = { userVisibleOnly: true, applicationServerKey: SubscriptionSync.base64UrlToBytes(body.public_key) };
  try {
    return await manager.subscribe(options);
  } catch (err) {
    // A subscription made with another key (the server's key changed) is in the way.
    if (!err || err.name !== 'InvalidStateError') throw err;
    const existing = await manager.getSubscription();
    if (existing) await existing.unsubscribe();
    return manager.subscribe(options);
  }
}

async function handleSubscriptionChange({ oldSubscription = null, newSubscription = null } = {}, options = {}) {
  try {
    const subscription = newSubscription || await resubscribe();
    const stored = await SubscriptionSync.store.load();
    const body = SubscriptionSync.subscribeBody({ subscription, oldSubscription, stored });
    const result = await SubscriptionSync.sendJson(SUBSCRIBE_URL, 'POST', body, options);
    if (result.ok) await SubscriptionSync.store.save(SubscriptionSync.storedRecord(body));
    else console.warn('push_service sw: the server did not take the renewed subscription:', result.status);
    await broadcast({ type: 'pushsubscriptionchange', ok: result.ok, status: result.status, answer: result.body });
    return result;
  } catch (err) {
    console.warn('push_service sw: renewing the subscription failed:', err && err.message);
    return { ok: false, status: 0, body: null, attempts: 0, waits: [], error: String(err && err.message) };
  }
}
// Tests call it through DevTools: Chromium never fires this event on its own.
self.handleSubscriptionChange = handleSubscriptionChange;

self.addEventListener('pushsubscriptionchange', (event) => {
  const change = { oldSubscription: event.oldSubscription, newSubscription: event.newSubscription };
  extendLifetime(event, handleSubscriptionChange(change));
});
