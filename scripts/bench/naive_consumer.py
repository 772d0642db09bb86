#!/usr/bin/env -S sh -c 'exec "${0%/*}/../.venv/bin/python" "$0" "$@"'
"""The issue's naive consumer: what one process does with the least work per message.

consume (manual ack) -> read the one device -> http_ece encrypt -> aiohttp POST
(cached VAPID header) -> two Redis writes (`--redis-writes`) -> ack. No validation,
no idempotency, no retries, no metrics: it drops what the service must not drop,
so it is not a design to copy, only a floor to measure the service against. With
`--redis-writes 0` it shows what RabbitMQ alone costs on top of the bare loop.

bench.baselines runs it as a child (`python -m bench.naive_consumer`) on a queue that
already holds the messages and reads the one JSON line it prints:
{"n", "elapsed_s", "cpu_s", "errors"}, timed from `basic_consume` to the last ack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import time
from typing import Any

import aiohttp
import aiormq
import http_ece
import orjson
import redis.asyncio as redis
from aiormq.abc import DeliveredMessage
from cryptography.hazmat.primitives.asymmetric import ec
from pamqp import commands as spec

from bench.amqp import AMQP_URL, REDIS_URL
from bench.data import SUBJECT, b64u_decode, push_headers


class NaiveConsumer:
    def __init__(self, args: argparse.Namespace, session: aiohttp.ClientSession) -> None:
        self.args = args
        self.session = session
        # One connection per message in flight: redis-py refuses to wait for a free one.
        self.redis = redis.Redis.from_url(args.redis_url, max_connections=args.prefetch)
        self.curve = ec.SECP256R1()
        self.headers: dict[str, str] = {}
        self.acked = 0
        self.errors = 0
        self.done = asyncio.Event()

    def vapid_headers(self, endpoint: str) -> dict[str, str]:
        if not self.headers:  # every endpoint is on the one sink: one JWT for the run
            self.headers = push_headers(self.args.vapid_key, SUBJECT, endpoint)
        return self.headers

    async def handle(self, message: DeliveredMessage) -> None:
        try:
            await self.push(message)
        except Exception as exc:  # counted and reported, so a failure can't hang the run
            self.errors += 1
            print(f"naive consumer: {exc!r}", file=sys.stderr)
        delivery = message.delivery
        assert isinstance(delivery, spec.Basic.Deliver)
        assert delivery.delivery_tag is not None
        await message.channel.basic_ack(delivery.delivery_tag)
        self.acked += 1
        if self.acked >= self.args.n:
            self.done.set()

    async def push(self, message: DeliveredMessage) -> None:
        body = orjson.loads(message.body)
        device = body["devices"][0]
        fields = ("notification_id", "title", "body", "action_url")
        payload = orjson.dumps({name: body.get(name) for name in fields})
        encrypted = http_ece.encrypt(
            payload,
            private_key=ec.generate_private_key(self.curve),
            dh=b64u_decode(device["keys"]["p256dh"]),
            auth_secret=b64u_decode(device["keys"]["auth"]),
            version="aes128gcm",
        )
        endpoint: str = device["endpoint"]
        key = f"{self.args.prefix}{body['notification_id']}"
        if self.args.redis_writes:
            await self.redis.hset(key, mapping={"status": "processing"})
        async with self.session.post(
            endpoint, data=encrypted, headers=self.vapid_headers(endpoint)
        ) as response:
            await response.read()
            if response.status != 201:
                self.errors += 1
        if self.args.redis_writes > 1:
            await self.redis.hset(key, mapping={"status": "sent", "code": response.status})


async def run(args: argparse.Namespace) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=args.cafile)
    connector = aiohttp.TCPConnector(ssl=context, limit=args.prefetch, limit_per_host=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        consumer = NaiveConsumer(args, session)
        connection = await aiormq.connect(args.amqp_url)
        channel = await connection.channel()
        await channel.basic_qos(prefetch_count=args.prefetch)
        started, cpu = time.perf_counter(), time.process_time()
        await channel.basic_consume(args.queue, consumer.handle, no_ack=False)
        await asyncio.wait_for(consumer.done.wait(), timeout=600)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        await connection.close()
        await consumer.redis.aclose()
    return {"n": args.n, "elapsed_s": elapsed, "cpu_s": cpu, "errors": consumer.errors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", required=True)
    parser.add_argument("-n", type=int, required=True, help="messages to consume")
    parser.add_argument("--cafile", required=True, help="the sink's CA certificate")
    parser.add_argument("--vapid-key", required=True, help="raw base64url private key")
    parser.add_argument("--prefix", default=f"naive{os.getpid()}:", help="Redis key prefix")
    parser.add_argument("--redis-writes", type=int, choices=(0, 1, 2), default=2)
    parser.add_argument("--prefetch", type=int, default=256)
    parser.add_argument("--amqp-url", default=AMQP_URL)
    parser.add_argument("--redis-url", default=REDIS_URL)
    args = parser.parse_args()
    import uvloop  # the service runs on uvloop too

    result = uvloop.run(run(args))
    print(json.dumps(result), flush=True)
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
