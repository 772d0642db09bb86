// Service worker of the push_service browser test page (scope /web_push_test/).
//
// Shows each push as a notification, forwards the payload to open windows of the
// page, and opens the payload's action_url (http/https only) when clicked.
'use strict';

const DEFAULT_TITLE = 'Notification';
const VAPID_KEY_URL = '/vapid_public_key';
const SUBSCRIBE_URL = '/subscribe';

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

function notificationOptions(payload) {
  const extra = isPlainObject(payload.data) ? payload.data : {};
  const data = { ...extra };
  if (payload.action_url !== undefined) data.action_url = payload.action_url;
  if (payload.notification_id !== undefined) data.notification_id = payload.notification_id;
  const options = { body: typeof payload.body === 'string' ? payload.body : '', data };
  const icon = optionalString(payload.icon);
  const badge = optionalString(payload.badge);
  const tag = optionalString(payload.tag);
  if (icon) options.icon = icon;
  if (badge) options.badge = badge;
  if (tag) options.tag = tag;
  return options;
}

self.addEventListener('push', (event) => {
  const payload = parsePushData(event.data);
  const title = optionalString(payload.title) || DEFAULT_TITLE;
  const shown = self.registration
    .showNotification(title, notificationOptions(payload))
    .catch((err) => {
      // E.g. permission revoked; still forward the payload to the page.
      console.warn('push_service sw: showNotification failed:', err && err.message);
    });
  const forwarded = broadcast({ type: 'push', payload, received_at: Date.now() }).catch((err) => {
    console.warn('push_service sw: forwarding the push failed:', err && err.message);
  });
  event.waitUntil(Promise.all([shown, forwarded]));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const data = isPlainObject(event.notification.data) ? event.notification.data : {};
  const target = safeHttpUrl(data.action_url);
  if (!target) return;
  event.waitUntil((async () => {
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
  })());
});

// The push service replaced or expired the subscription: subscribe again with the
// server's current key and send the new subscription to the server.
self.addEventListener('pushsubscriptionchange', (event) => {
  event.waitUntil((async () => {
    try {
      let subscription = event.newSubscription || null;
      if (!subscription) {
        const response = await fetch(VAPID_KEY_URL, { cache: 'no-store' });
        if (!response.ok) return;
        const body = await response.json();
        const b64 = String(body.public_key || '').replace(/-/g, '+').replace(/_/g, '/');
        const raw = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
        const key = Uint8Array.from(raw, (c) => c.charCodeAt(0));
        subscription = await self.registration.pushManager.subscribe({
          userVisibleOnly: true,
          applicationServerKey: key,
        });
      }
      const json = typeof subscription.toJSON === 'function' ? subscription.toJSON() : subscription;
      const response = await fetch(SUBSCRIBE_URL, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ endpoint: json.endpoint, expirationTime: json.expirationTime ?? null, keys: json.keys }),
      });
      if (response.ok) await broadcast({ type: 'pushsubscriptionchange' });
    } catch (err) {
      console.warn('push_service sw: renewing the subscription failed:', err && err.message);
    }
  })());
});
