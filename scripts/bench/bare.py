"""The bare ceiling: only encrypt (http_ece) and POST (one aiohttp session), 64 in flight.

What this stack can do per push with nothing else: no queue, no validation, no status,
a VAPID header signed once. Everything that can be prepared once is (endpoint URLs,
decoded keys, the plaintexts); every push still gets a fresh ephemeral key and salt.

It runs on the service's own interpreter (the same http_ece, aiohttp, cryptography and
uvloop) and stays up for the whole benchmark like the service does: each line
`N` on stdin runs N pushes and answers one JSON line {"n", "elapsed_s", "status",
"errors"}; EOF ends it. The first command is the warm-up (connections opened).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from typing import Any

import aiohttp
import http_ece
from cryptography.hazmat.primitives.asymmetric import ec
from multidict import CIMultiDict
from yarl import URL

from bench.data import (
    PAYLOAD_SIZE,
    SUBJECT,
    b64u_decode,
    make_payload,
    make_subscriptions,
    make_vapid,
    push_headers,
)

CONCURRENCY = 64


class BareLoop:
    def __init__(self, session: aiohttp.ClientSession, sink_url: str, payload_size: int) -> None:
        self.session = session
        self.targets = [
            (URL(s["endpoint"]), b64u_decode(s["keys"]["p256dh"]), b64u_decode(s["keys"]["auth"]))
            for s in make_subscriptions(sink_url)
        ]
        self.plaintexts = [make_payload(i, payload_size) for i in range(1024)]
        self.headers = CIMultiDict(push_headers(make_vapid()["private_key"], SUBJECT, sink_url))
        self.curve = ec.SECP256R1()
        self.sent = 0

    async def push(self, i: int, status: dict[str, int], errors: list[str]) -> None:
        endpoint, p256dh, secret = self.targets[i % len(self.targets)]
        body = http_ece.encrypt(
            self.plaintexts[i % len(self.plaintexts)],
            private_key=ec.generate_private_key(self.curve),
            dh=p256dh,
            auth_secret=secret,
            version="aes128gcm",
        )
        code = "error"
        try:
            async with self.session.post(endpoint, data=body, headers=self.headers) as response:
                await response.read()
                code = str(response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            if len(errors) < 5:
                errors.append(repr(exc))
        status[code] = status.get(code, 0) + 1

    async def run(self, count: int) -> dict[str, Any]:
        status: dict[str, int] = {}
        errors: list[str] = []
        first, end = self.sent, self.sent + count

        async def worker() -> None:
            while self.sent < end:
                self.sent += 1
                await self.push(self.sent - 1, status, errors)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(CONCURRENCY, count))))
        elapsed = time.perf_counter() - started
        return {"n": self.sent - first, "elapsed_s": elapsed, "status": status, "errors": errors}


async def serve(args: argparse.Namespace) -> None:
    context = ssl.create_default_context(cafile=args.cafile)
    connector = aiohttp.TCPConnector(
        ssl=context, limit=CONCURRENCY, limit_per_host=CONCURRENCY, keepalive_timeout=60
    )
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        loop = BareLoop(session, args.sink_url, args.payload)
        reader = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
        )
        while line := await reader.readline():
            result = await loop.run(int(line))
            print(json.dumps(result), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sink-url", required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--payload", type=int, default=PAYLOAD_SIZE)
    args = parser.parse_args()
    import uvloop  # the service runs on uvloop too

    uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
