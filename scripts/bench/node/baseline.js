#!/usr/bin/env node
// Baseline (b): Node's web-push library, `concurrency` sends in flight over one
// keep-alive https.Agent, against the local push sink (scripts/bench/sink.py).
//
//   NODE_EXTRA_CA_CERTS=<sink cafile> node baseline.js CONFIG.json
//
// CONFIG (written by scripts/bench/baselines.py):
//   { "subscriptions": [{"endpoint", "keys": {"p256dh", "auth"}}, ...],
//     "vapid": {"subject", "public_key", "private_key"},   // base64url raw keys
//     "n": 3000, "warmup": 300, "concurrency": 64, "payload_size": 300, "ttl": 60,
//     "reset_url": "https://127.0.0.1:PORT/reset" }          // optional
//
// Sends `warmup` pushes, POSTs reset_url (so the sink counts only the measured
// run), then times `n` pushes. Prints one JSON line:
//   {"n", "elapsed_s", "cpu_s", "status": {"201": n, ...}, "errors": [...]}
// and exits 1 unless every push was answered 201.
'use strict';

const fs = require('fs');
const https = require('https');
const webpush = require('web-push');

function makePayload(i, size) {
  // Same shape and size as make_payload() in scripts/bench/data.py.
  const msg = {
    notification_id: 'bench-' + String(i).padStart(8, '0'),
    title: 'Benchmark',
    body: '',
    action_url: 'https://example.com/bench',
  };
  const pad = size - Buffer.byteLength(JSON.stringify(msg));
  msg.body = 'x'.repeat(Math.max(0, pad));
  return JSON.stringify(msg);
}

async function runBatch(count, offset, cfg, agent, tally) {
  const subs = cfg.subscriptions;
  const options = { TTL: cfg.ttl, agent, timeout: 30000 };
  let next = 0;
  async function worker() {
    for (;;) {
      const i = next;
      next += 1;
      if (i >= count) return;
      const k = offset + i;
      try {
        const res = await webpush.sendNotification(
          subs[k % subs.length], makePayload(k, cfg.payload_size), options);
        tally.status[res.statusCode] = (tally.status[res.statusCode] || 0) + 1;
      } catch (err) {
        const code = err.statusCode || 'error';
        tally.status[code] = (tally.status[code] || 0) + 1;
        if (tally.errors.length < 5) tally.errors.push(String(err.message || err));
      }
    }
  }
  const workers = [];
  for (let w = 0; w < Math.min(cfg.concurrency, count); w += 1) workers.push(worker());
  await Promise.all(workers);
}

function post(url, agent) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: 'POST', agent, headers: { 'Content-Length': 0 } },
      (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
    req.on('error', reject);
    req.end();
  });
}

async function main() {
  const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  cfg.concurrency = cfg.concurrency || 64;
  cfg.payload_size = cfg.payload_size || 300;
  cfg.ttl = cfg.ttl || 60;
  webpush.setVapidDetails(cfg.vapid.subject, cfg.vapid.public_key, cfg.vapid.private_key);
  const agent = new https.Agent({
    keepAlive: true,
    maxSockets: cfg.concurrency,
    maxFreeSockets: cfg.concurrency,
  });

  const warm = { status: {}, errors: [] };
  if (cfg.warmup > 0) await runBatch(cfg.warmup, 0, cfg, agent, warm);
  if ((warm.status[201] || 0) !== (cfg.warmup || 0)) {
    console.log(JSON.stringify({ phase: 'warmup', status: warm.status, errors: warm.errors }));
    process.exit(1);
  }
  if (cfg.reset_url) {
    const code = await post(cfg.reset_url, agent);
    if (code !== 204) throw new Error('sink reset answered ' + code);
  }

  const tally = { status: {}, errors: [] };
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await runBatch(cfg.n, cfg.warmup || 0, cfg, agent, tally);
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  const c1 = process.cpuUsage(c0);
  agent.destroy();
  const ok = (tally.status[201] || 0) === cfg.n;
  console.log(JSON.stringify({
    n: cfg.n,
    elapsed_s: elapsed,
    cpu_s: (c1.user + c1.system) / 1e6,
    status: tally.status,
    errors: tally.errors,
    node: process.version,
    web_push: require('web-push/package.json').version,
  }));
  process.exit(ok ? 0 : 1);
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(2);
});
