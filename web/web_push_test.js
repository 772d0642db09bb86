// Browser test page of push_service.
//
// Plain ES2020, no build step. Served under a strict CSP (script-src 'self'),
// so everything lives in this file: no inline handlers, no eval, no innerHTML
// with data from the network (all text goes through textContent).
'use strict';

(() => {
  const SW_URL = '/web_push_test/sw.js';
  const SW_SCOPE = '/web_push_test/';
  const VAPID_KEY_URL = '/vapid_public_key';
  const SUBSCRIBE_URL = '/subscribe';
  const STATUS_URL = '/notifications/';
  const POLL_INTERVAL_MS = 500;
  const POLL_TIMEOUT_MS = 30000;
  const REQUEST_TIMEOUT_MS = 10000;
  const SUBSCRIBE_TIMEOUT_MS = 20000;

  const $ = (id) => document.getElementById(id);
  // subscription_sync.js: the /subscribe bodies and the record of the last sync.
  const Sync = window.SubscriptionSync;

  const el = {
    error: $('error'),
    support: $('support-status'),
    sw: $('sw-status'),
    vapid: $('vapid-key'),
    form: $('subscribe-form'),
    userId: $('user-id'),
    subscribeBtn: $('subscribe-btn'),
    unsubscribeBtn: $('unsubscribe-btn'),
    subscription: $('subscription-status'),
    sync: $('sync-status'),
    notificationId: $('notification-id'),
    notificationStatus: $('notification-status'),
    receivedList: $('received-list'),
    receivedEmpty: $('received-empty'),
  };

  const state = {
    supported: false,
    registration: null, // ServiceWorkerRegistration once ready
    readyPromise: null, // resolves to the ready registration (or rejects)
    vapidKey: null, // base64url string
    vapidKeyBytes: null, // Uint8Array(65)
    subscription: null, // last PushSubscription (real or test double)
    busy: false,
    pollToken: 0, // bumps to cancel a running poll
  };

  // ---------------------------------------------------------------- helpers

  function setText(node, text, status) {
    node.textContent = text;
    if (status !== undefined) node.dataset.status = status;
  }

  function showError(message) {
    el.error.textContent = message;
    el.error.hidden = false;
  }

  function clearError() {
    el.error.textContent = '';
    el.error.hidden = true;
  }

  function describeError(err) {
    if (!err) return 'Unknown error';
    if (typeof err === 'string') return err;
    const name = err.name && err.name !== 'Error' ? `${err.name}: ` : '';
    return `${name}${err.message || String(err)}`;
  }

  // base64url (with or without padding) -> Uint8Array
  function base64UrlToBytes(value) {
    if (typeof value !== 'string' || !/^[A-Za-z0-9_-]+={0,2}$/.test(value.trim())) {
      throw new Error('not a base64url string');
    }
    const b64 = value.trim().replace(/=+$/, '').replace(/-/g, '+').replace(/_/g, '/');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const raw = atob(padded);
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i += 1) out[i] = raw.charCodeAt(i);
    return out;
  }

  function sameBytes(a, b) {
    if (!a || !b) return false;
    const x = a instanceof Uint8Array ? a : new Uint8Array(a);
    const y = b instanceof Uint8Array ? b : new Uint8Array(b);
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i += 1) if (x[i] !== y[i]) return false;
    return true;
  }

  function safeHttpUrl(value) {
    if (typeof value !== 'string' || value === '') return null;
    try {
      const url = new URL(value, window.location.origin);
      return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  async function fetchWithTimeout(url, options = {}, timeoutMs = REQUEST_TIMEOUT_MS) {
    const controller = typeof AbortController === 'function' ? new AbortController() : null;
    const timer = controller ? setTimeout(() => controller.abort(), timeoutMs) : null;
    try {
      return await fetch(url, {
        credentials: 'same-origin',
        cache: 'no-store',
        ...options,
        signal: controller ? controller.signal : undefined,
      });
    } catch (err) {
      if (err && err.name === 'AbortError') {
        throw new Error(`request to ${url} timed out after ${Math.round(timeoutMs / 1000)} s`);
      }
      throw new Error(`could not reach the server (${describeError(err)})`);
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  // Reads a JSON body if there is one; never throws.
  async function readJson(response) {
    const text = await response.text().catch(() => '');
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch (_) {
      return null;
    }
  }

  // Turns a {"error": code, "detail": text} body (or anything else) into a message.
  function errorMessageFrom(response, body) {
    const where = `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`;
    if (body && typeof body === 'object') {
      let detail = body.detail !== undefined ? body.detail : body.message;
      if (detail !== undefined && typeof detail !== 'string') {
        try {
          detail = JSON.stringify(detail);
        } catch (_) {
          detail = String(detail);
        }
      }
      const code = typeof body.error === 'string' ? body.error : '';
      if (detail && code) return `${detail} (${code}, ${where})`;
      if (detail) return `${detail} (${where})`;
      if (code) return `${code} (${where})`;
    }
    return `The server answered ${where}.`;
  }

  // Some browsers (e.g. Chromium builds without a reachable push service) never
  // settle pushManager.subscribe(); give up waiting instead of hanging the page.
  function withTimeout(promise, ms, message) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => {
        const err = new Error(message);
        err.name = 'TimeoutError';
        reject(err);
      }, ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  function setBusy(busy) {
    state.busy = busy;
    el.form.setAttribute('aria-busy', busy ? 'true' : 'false');
    updateButtons();
  }

  function updateButtons() {
    const usable = state.supported && state.readyPromise !== null;
    el.subscribeBtn.disabled = !usable || state.busy;
    el.unsubscribeBtn.disabled = !usable || state.busy || !state.subscription;
  }

  // ---------------------------------------------------------------- support

  function detectSupport() {
    const missing = [];
    if (!('serviceWorker' in navigator)) missing.push('service workers');
    if (!('PushManager' in window)) missing.push('the Push API');
    if (!('Notification' in window)) missing.push('notifications');
    if (missing.length === 0) {
      setText(el.support, 'Web push is supported in this browser.', 'supported');
      return true;
    }
    let message = `This browser does not support web push (missing: ${missing.join(', ')}).`;
    if (window.isSecureContext === false) {
      message += ' Web push needs a secure context: open this page over HTTPS or from localhost.';
    } else {
      message += ' Try a current Chrome, Edge, Firefox, or Safari (on iOS: add the page to the home screen first).';
    }
    setText(el.support, message, 'unsupported');
    return false;
  }

  // ---------------------------------------------------------------- service worker

  function registerServiceWorker() {
    setText(el.sw, 'Registering…', 'registering');
    state.readyPromise = navigator.serviceWorker
      .register(SW_URL, { scope: SW_SCOPE, updateViaCache: 'none' })
      .then(() => navigator.serviceWorker.ready)
      .then((registration) => {
        state.registration = registration;
        setText(el.sw, `Service worker ready (scope ${registration.scope})`, 'ready');
        return registration;
      });
    state.readyPromise.catch((err) => {
      setText(el.sw, 'Service worker registration failed.', 'failed');
      showError(`Could not register the service worker: ${describeError(err)}`);
      console.error('service worker registration failed:', describeError(err));
      state.supported = false;
      updateButtons();
    });
    updateButtons();
    return state.readyPromise;
  }

  // ---------------------------------------------------------------- VAPID key

  async function loadVapidKey() {
    setText(el.vapid, 'Loading…', 'loading');
    const response = await fetchWithTimeout(VAPID_KEY_URL, { headers: { Accept: 'application/json' } });
    const body = await readJson(response);
    if (!response.ok) throw new Error(`Could not load the VAPID public key: ${errorMessageFrom(response, body)}`);
    const key = body && typeof body.public_key === 'string' ? body.public_key.trim() : '';
    let bytes;
    try {
      bytes = base64UrlToBytes(key);
    } catch (_) {
      bytes = null;
    }
    if (!bytes || bytes.length !== 65 || bytes[0] !== 0x04) {
      throw new Error('The server sent a malformed VAPID public key (expected a base64url uncompressed P-256 point).');
    }
    state.vapidKey = key;
    state.vapidKeyBytes = bytes;
    setText(el.vapid, key, 'loaded');
    return bytes;
  }

  async function ensureVapidKey() {
    if (state.vapidKeyBytes) return state.vapidKeyBytes;
    try {
      return await loadVapidKey();
    } catch (err) {
      setText(el.vapid, 'Not available', 'failed');
      throw err;
    }
  }

  // ---------------------------------------------------------------- permission

  function requestPermission() {
    // Older Safari only supports the callback form.
    return new Promise((resolve, reject) => {
      try {
        const maybePromise = Notification.requestPermission(resolve);
        if (maybePromise && typeof maybePromise.then === 'function') maybePromise.then(resolve, reject);
      } catch (err) {
        reject(err);
      }
    });
  }

  // ---------------------------------------------------------------- subscribe

  async function getExistingSubscription(registration) {
    try {
      return await registration.pushManager.getSubscription();
    } catch (err) {
      // E.g. Chromium in an incognito profile: treat as "no subscription".
      console.warn('pushManager.getSubscription() failed:', describeError(err));
      return null;
    }
  }

  function subscriptionKey(subscription) {
    const options = subscription && subscription.options;
    return options && options.applicationServerKey ? options.applicationServerKey : null;
  }

  async function obtainSubscription(registration, keyBytes) {
    let subscription = await getExistingSubscription(registration);
    if (subscription) {
      const existingKey = subscriptionKey(subscription);
      if (existingKey && !sameBytes(existingKey, keyBytes)) {
        // Made with another VAPID key (the server's key changed): replace it.
        setText(el.subscription, 'Replacing a subscription made with an old VAPID key…', 'working');
        try {
          await subscription.unsubscribe();
        } catch (err) {
          console.warn('could not remove the old subscription:', describeError(err));
        }
        subscription = null;
      }
    }
    if (!subscription) {
      setText(el.subscription, 'Subscribing with the browser push service…', 'working');
      try {
        subscription = await withTimeout(
          registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes }),
          SUBSCRIBE_TIMEOUT_MS,
          `the browser's push service did not answer within ${SUBSCRIBE_TIMEOUT_MS / 1000} s`,
        );
      } catch (err) {
        let hint = '';
        if (err && err.name === 'NotAllowedError') hint = ' Notification permission is not granted.';
        else if (err && err.name === 'AbortError') {
          hint = ' The browser could not reach its push service (private/incognito windows and some'
            + ' Chromium builds without a push service cannot subscribe).';
        } else if (err && err.name === 'TimeoutError') {
          hint = ' Check that the browser can reach its push service (network, proxy, browser build).';
        }
        throw new Error(`The browser could not subscribe: ${describeError(err)}.${hint}`);
      }
    }
    if (!subscription) throw new Error('The browser returned no push subscription.');
    return subscription;
  }

  // The server's last answer, whatever it was: shown as it came.
  function showServerAnswer(response, body, okStatus) {
    const b = body && typeof body === 'object' ? body : {};
    const said = [b.message, b.detail, b.error].find((v) => typeof v === 'string' && v) || '';
    setText(el.sync, `HTTP ${response.status}${said ? `: ${said}` : ''}`, response.ok ? okStatus : 'failed');
  }

  // POSTs the subscription (as the replacement of the last synced endpoint when that
  // differs) and remembers it as synced; -> {status, body}.
  async function sendSubscription(subscription, userId) {
    const stored = await Sync.store.load();
    const payload = Sync.subscribeBody({ subscription, stored, userId });
    const response = await fetchWithTimeout(SUBSCRIBE_URL, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(payload),
    });
    const body = await readJson(response);
    showServerAnswer(response, body, response.status === 202 ? 'created' : 'synced');
    if (!response.ok) throw new Error(`The server rejected the subscription: ${errorMessageFrom(response, body)}`);
    if (!body || typeof body !== 'object') throw new Error('The server accepted the subscription but sent no JSON body.');
    await Sync.store.save(Sync.storedRecord(payload));
    return { status: response.status, body };
  }

  // A 202 queued a welcome: follow it. A 200 (already registered, or a replacement)
  // queued nothing, by design.
  function showOutcome(status, body) {
    const notificationId = typeof body.notification_id === 'string' ? body.notification_id : '';
    setText(el.notificationId, notificationId);
    if (notificationId) {
      pollStatus(notificationId); // runs on its own; not awaited so the buttons free up
    } else if (status === 200) {
      setText(el.notificationStatus, 'No welcome: the server already had this subscription.', 'none');
    } else {
      setText(el.notificationStatus, 'The server returned no notification id.', 'unknown');
    }
  }

  async function onSubscribe(event) {
    if (event) event.preventDefault();
    if (state.busy || !state.supported) return;
    clearError();
    setBusy(true);
    // A new attempt: forget the previous notification and stop polling it.
    state.pollToken += 1;
    setText(el.notificationId, '');
    setText(el.notificationStatus, '');
    delete el.notificationStatus.dataset.status;
    // Ask first, inside the click: Safari only shows the prompt during a user gesture.
    let permissionPromise;
    try {
      permissionPromise = requestPermission();
    } catch (err) {
      permissionPromise = Promise.reject(err);
    }
    try {
      setText(el.subscription, 'Asking for notification permission…', 'working');
      const permission = await permissionPromise;
      if (permission === 'denied') {
        setText(el.subscription, 'Notification permission denied.', 'denied');
        showError('Notifications are blocked for this site, so it cannot subscribe. To re-enable them, open'
          + ' the site settings (the icon left of the address bar), set Notifications to "Allow",'
          + ' then reload this page and press Subscribe again.');
        return;
      }
      if (permission !== 'granted') {
        setText(el.subscription, 'The permission prompt was dismissed without a choice. Press Subscribe to be asked again.', 'dismissed');
        return;
      }

      setText(el.subscription, 'Waiting for the service worker…', 'working');
      const registration = await state.readyPromise;
      const keyBytes = await ensureVapidKey();
      const subscription = await obtainSubscription(registration, keyBytes);
      state.subscription = subscription;

      setText(el.subscription, 'Sending the subscription to the server…', 'working');
      const { status, body } = await sendSubscription(subscription, el.userId.value.trim());
      setText(el.subscription, body.message || 'Subscription received.', 'subscribed');
      showOutcome(status, body);
    } catch (err) {
      if (el.subscription.dataset.status === 'working') setText(el.subscription, 'Subscribing failed.', 'failed');
      showError(describeError(err));
    } finally {
      setBusy(false);
    }
  }

  // DELETE /subscribe, proven by the subscription's own auth secret (so no cookies);
  // -> the HTTP status, 0 when the server was not reached. Never throws.
  async function deleteOnServer(subscription) {
    try {
      const response = await fetchWithTimeout(SUBSCRIBE_URL, {
        method: 'DELETE',
        credentials: 'omit',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(Sync.deleteBody(subscription)),
      });
      showServerAnswer(response, await readJson(response), 'removed');
      return response.status;
    } catch (err) {
      setText(el.sync, `Not sent: ${describeError(err)}`, 'failed');
      return 0;
    }
  }

  const UNSUBSCRIBED = {
    200: 'Unsubscribed: the server removed the subscription and this browser dropped it.',
    404: 'Unsubscribed in this browser; the server did not have this subscription.',
  };

  // The server first (it needs the subscription's secret), then the browser: even when the
  // server cannot be told, the browser's unsubscribe stops the pushes (the server drops the
  // endpoint when the push service reports it gone).
  async function onUnsubscribe() {
    if (state.busy) return;
    clearError();
    setBusy(true);
    try {
      let subscription = null;
      if (state.registration) subscription = await getExistingSubscription(state.registration);
      subscription = subscription || state.subscription;
      const status = subscription ? await deleteOnServer(subscription) : 0;
      if (subscription && typeof subscription.unsubscribe === 'function') {
        await subscription.unsubscribe();
      }
      await Sync.store.clear();
      state.subscription = null;
      state.pollToken += 1;
      setText(el.subscription, UNSUBSCRIBED[status] || 'Unsubscribed in this browser; the server could not be'
        + ' told (see its answer) and drops the endpoint when the push service reports it gone.', 'unsubscribed');
    } catch (err) {
      showError(`Could not unsubscribe: ${describeError(err)}`);
    } finally {
      setBusy(false);
    }
  }

  // ---------------------------------------------------------------- status polling

  function describeRecord(record) {
    const status = typeof record.status === 'string' ? record.status : 'unknown';
    const devices = Array.isArray(record.devices) ? record.devices : [];
    const parts = [status];
    const counts = [];
    if (typeof record.sent === 'number') counts.push(`${record.sent} sent`);
    if (typeof record.failed === 'number') counts.push(`${record.failed} failed`);
    if (counts.length === 0 && devices.length) counts.push(`${devices.length} device(s)`);
    if (counts.length) parts.push(`(${counts.join(', ')})`);
    if (status === 'failed') {
      let reason = typeof record.reason === 'string' ? record.reason : '';
      if (!reason) {
        const device = devices.find((d) => d && typeof d.reason === 'string' && d.reason);
        if (device) reason = device.reason;
      }
      if (reason) parts.push(`: ${reason}`);
    }
    return parts.join(' ').replace(' :', ':');
  }

  async function pollStatus(notificationId) {
    state.pollToken += 1;
    const token = state.pollToken;
    const deadline = Date.now() + POLL_TIMEOUT_MS;
    const url = STATUS_URL + encodeURIComponent(notificationId);
    let last = 'queued';
    setText(el.notificationStatus, 'queued', 'queued');
    for (;;) {
      if (token !== state.pollToken) return; // superseded by a newer subscription
      try {
        const response = await fetchWithTimeout(url, { headers: { Accept: 'application/json' } }, 5000);
        if (token !== state.pollToken) return;
        if (response.status === 404) {
          await response.text().catch(() => '');
          last = 'queued';
          setText(el.notificationStatus, 'queued (waiting for the consumer to pick it up)', 'queued');
        } else if (response.ok) {
          const record = await readJson(response);
          if (token !== state.pollToken) return;
          if (record && typeof record === 'object' && typeof record.status === 'string') {
            last = record.status;
            setText(el.notificationStatus, describeRecord(record), record.status);
            if (record.status === 'sent' || record.status === 'failed') return;
          }
        } else {
          const body = await readJson(response);
          setText(el.notificationStatus, `${last} (status check failed: ${errorMessageFrom(response, body)}; retrying)`, last);
        }
      } catch (err) {
        if (token !== state.pollToken) return;
        setText(el.notificationStatus, `${last} (status check failed: ${describeError(err)}; retrying)`, last);
      }
      if (Date.now() + POLL_INTERVAL_MS > deadline) break;
      await sleep(POLL_INTERVAL_MS);
    }
    if (token !== state.pollToken) return;
    setText(el.notificationStatus,
      `${last} (no final status after ${POLL_TIMEOUT_MS / 1000} s; stopped checking)`, 'timeout');
  }

  // ---------------------------------------------------------------- received pushes

  function field(payload, name) {
    const value = payload ? payload[name] : undefined;
    if (value === undefined || value === null) return '';
    return typeof value === 'string' ? value : String(value);
  }

  // The notification's buttons (the service worker passes them on), each a link to the
  // URL that clicking it opens.
  function actionList(actions, fallbackUrl) {
    if (!Array.isArray(actions) || actions.length === 0) return null;
    const list = document.createElement('ul');
    list.className = 'push-actions';
    for (const action of actions) {
      if (!action || typeof action !== 'object') continue;
      const item = document.createElement('li');
      const url = safeHttpUrl(field(action, 'navigate') || fallbackUrl);
      const label = url ? document.createElement('a') : document.createElement('span');
      label.className = 'push-action';
      label.dataset.action = field(action, 'action');
      label.textContent = field(action, 'title');
      if (url) {
        label.href = url;
        label.rel = 'noopener noreferrer';
        label.target = '_blank';
      }
      item.append(label);
      list.append(item);
    }
    return list;
  }

  function addReceived(payload, receivedAt) {
    const p = payload && typeof payload === 'object' ? payload : { body: String(payload) };
    const title = field(p, 'title') || 'Notification';
    const body = field(p, 'body');
    const actionUrl = field(p, 'action_url');
    const notificationId = field(p, 'notification_id');
    const when = new Date(typeof receivedAt === 'number' ? receivedAt : Date.now());

    const li = document.createElement('li');
    li.className = 'received-push';
    if (notificationId) li.dataset.notificationId = notificationId;
    if (p.format) li.dataset.format = field(p, 'format');

    const heading = document.createElement('strong');
    heading.className = 'push-title';
    heading.textContent = title;
    li.append(heading);

    const text = document.createElement('p');
    text.className = 'push-body';
    text.textContent = body;
    li.append(text);

    const meta = document.createElement('p');
    meta.className = 'push-meta';
    if (actionUrl) {
      const safe = safeHttpUrl(actionUrl);
      if (safe) {
        const link = document.createElement('a');
        link.className = 'push-action-url';
        link.href = safe;
        link.rel = 'noopener noreferrer';
        link.target = '_blank';
        link.textContent = actionUrl;
        meta.append(link);
      } else {
        const span = document.createElement('span');
        span.className = 'push-action-url';
        span.textContent = `${actionUrl} (not an http(s) URL)`;
        meta.append(span);
      }
      meta.append(' · ');
    }
    if (p.format === 'declarative') {
      const format = document.createElement('span');
      format.className = 'push-format';
      format.textContent = 'declarative';
      meta.append(format, ' · ');
    }
    if (notificationId) {
      const id = document.createElement('code');
      id.className = 'push-notification-id';
      id.textContent = notificationId;
      meta.append('id ', id, ' · ');
    }
    const time = document.createElement('time');
    time.className = 'push-time';
    time.dateTime = when.toISOString();
    time.textContent = when.toLocaleTimeString();
    meta.append(time);
    li.append(meta);
    const actions = actionList(p.actions, actionUrl);
    if (actions) li.append(actions);

    el.receivedList.append(li);
    el.receivedEmpty.hidden = true;
  }

  function onWorkerMessage(event) {
    const message = event.data;
    if (!message || typeof message !== 'object') return;
    if (message.type === 'push') {
      addReceived(message.payload, message.received_at);
    } else if (message.type === 'pushsubscriptionchange') {
      const said = message.answer && typeof message.answer.message === 'string' ? `: ${message.answer.message}` : '';
      setText(el.sync, `HTTP ${message.status}${said}`, message.ok ? 'synced' : 'failed');
      if (message.ok) {
        setText(el.subscription, 'The browser renewed the push subscription; the service worker sent the new one to the server.', 'subscribed');
      } else {
        setText(el.subscription, 'The browser renewed the push subscription, but the server did not take it. Press Subscribe to send it again.', 'failed');
      }
    }
  }

  // ---------------------------------------------------------------- key rotation

  // A subscription is bound to the VAPID key it was made with. When the server's
  // current key (GET /vapid_public_key) is another one, replace the subscription at
  // once, telling the server which one it replaces (old_endpoint, proven by its auth).
  async function renewIfKeyChanged() {
    let registration;
    let keyBytes;
    let old;
    try {
      registration = await state.readyPromise;
      keyBytes = await ensureVapidKey();
      old = await getExistingSubscription(registration);
    } catch (_) {
      return; // no worker or no key: already reported where it failed
    }
    const oldKey = subscriptionKey(old);
    if (!old || !oldKey || sameBytes(oldKey, keyBytes) || Notification.permission !== 'granted') return;
    if (state.busy) return; // a Subscribe in progress replaces it itself
    setBusy(true);
    try {
      const oldJson = subscriptionJson(old);
      const renewed = subscriptionJson(await obtainSubscription(registration, keyBytes));
      const payload = {
        endpoint: renewed.endpoint,
        expirationTime: renewed.expirationTime === undefined ? null : renewed.expirationTime,
        keys: renewed.keys,
        old_endpoint: oldJson.endpoint,
        old_keys: { auth: oldJson.keys && oldJson.keys.auth },
      };
      const userId = el.userId.value.trim();
      if (userId) payload.user_id = userId;
      const response = await fetchWithTimeout(SUBSCRIBE_URL, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(payload),
      });
      const body = await readJson(response);
      if (!response.ok) throw new Error(`The server rejected the renewed subscription: ${errorMessageFrom(response, body)}`);
      state.subscription = await getExistingSubscription(registration);
      setText(el.subscription, 'The server\'s VAPID key changed: this browser subscribed again with the new key.', 'subscribed');
    } finally {
      setBusy(false);
    }
  }

  // ---------------------------------------------------------------- start-up

  // On every load: a subscription this browser already has is sent to the server again,
  // so the server's copy follows a renewal the worker missed, or a server that lost it.
  // A known one answers 200 and queues nothing; one the server lost is welcomed again.
  async function resyncExistingSubscription(registration) {
    const subscription = await getExistingSubscription(registration);
    if (!subscription || state.subscription || state.busy) return;
    state.subscription = subscription;
    setBusy(true);
    try {
      const keyBytes = await ensureVapidKey();
      const key = subscriptionKey(subscription);
      if (key && !sameBytes(key, keyBytes)) {
        setText(el.subscription, 'This browser has a subscription made with an old VAPID key. Press Subscribe to replace it.', 'existing');
        return;
      }
      setText(el.subscription, 'Sending this browser\'s subscription to the server again…', 'working');
      const stored = await Sync.store.load();
      const { status, body } = await sendSubscription(subscription, stored ? stored.user_id : null);
      setText(el.subscription, body.message || 'Subscription re-synced.', 'subscribed');
      showOutcome(status, body);
    } catch (err) {
      setText(el.subscription, 'Re-syncing the subscription failed. Press Subscribe to try again.', 'failed');
      showError(describeError(err));
    } finally {
      setBusy(false);
    }
  }

  function init() {
    clearError();
    el.form.addEventListener('submit', onSubscribe);
    el.unsubscribeBtn.addEventListener('click', onUnsubscribe);

    state.supported = detectSupport();
    if (!state.supported) {
      setText(el.sw, 'Not available', 'unsupported');
      setText(el.vapid, 'Not loaded', 'unsupported');
      updateButtons();
      return;
    }

    navigator.serviceWorker.addEventListener('message', onWorkerMessage);
    if (typeof navigator.serviceWorker.startMessages === 'function') navigator.serviceWorker.startMessages();

    registerServiceWorker()
      .then((registration) => resyncExistingSubscription(registration))
      .catch(() => { /* reported by registerServiceWorker */ });

    loadVapidKey().catch((err) => {
      setText(el.vapid, 'Not available', 'failed');
      showError(describeError(err));
    });
    renewIfKeyChanged().catch((err) => showError(describeError(err)));
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init, { once: true });
  } else {
    init();
  }
})();
