#!/usr/bin/env python3
"""Cost of validating one queue message: `parse_notification` in CPU microseconds.

Times the parser that the consumer runs on every message, for messages with one
device and with 1,000 (distinct endpoints and keys), each over several rounds in this
process, and prints the median and the spread of the rounds. Two cases:

  cold  every message brings devices whose keys the parser has not seen lately (a
        pool of messages larger than any key cache, parsed in turn);
  warm  the same message again and again (a device that receives many pushes).

The endpoint policy is built once, as the consumer holds it, so its per-origin
verdicts are cached in both cases. CPU time of this thread is measured, not wall
time, so that other processes on a shared machine disturb the numbers less.

    .venv/bin/python scripts/bench/bench_parse.py [--rounds 7] [--seconds 0.4]

Runs against whichever `push_service` is importable, so the same script measures
another checkout: `PYTHONPATH=/path/to/other/checkout python scripts/bench/...`.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from push_service.endpoints import EndpointPolicy
from push_service.models import parse_notification

ALLOWLIST = ("fcm.googleapis.com", "*.push.services.mozilla.com", "*.push.apple.com")
SIZES = (1, 1_000)
COLD_KEYS = 10_000  # more distinct keys than any cache the parser keeps


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def device(index: int) -> dict[str, Any]:
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {
        "endpoint": f"https://fcm.googleapis.com/fcm/send/device-{index}-{os.urandom(8).hex()}",
        "expirationTime": None,
        "keys": {"p256dh": b64url(point), "auth": b64url(os.urandom(16))},
    }


def message(devices: int) -> bytes:
    return orjson.dumps(
        {
            "notification_id": f"bench-{devices}",
            "user_id": "user-1",
            "devices": [device(i) for i in range(devices)],
            "title": "Your order has shipped",
            "body": "It will arrive on Thursday.",
            "action_url": "https://shop.example/orders/1",
            "icon": "/icon.png",
            "tag": "order-1",
            "ttl": 3600,
            "urgency": "normal",
            "data": {"order": 1},
        }
    )


def time_call(call: Callable[[], object], seconds: float) -> float:
    """CPU microseconds per call, over as many calls as fit in about `seconds` of CPU."""
    calls, started = 0, time.thread_time()
    while True:
        call()
        calls += 1
        elapsed = time.thread_time() - started
        if elapsed >= seconds:
            return elapsed / calls * 1e6


def measure(
    bodies: list[bytes], policy: EndpointPolicy, rounds: int, seconds: float
) -> list[float]:
    """Rounds of parsing `bodies` in turn (one body: the same message each time)."""
    turn = itertools.cycle(bodies)

    def call() -> object:
        return parse_notification(next(turn), policy, 10_000)

    call()  # warm-up: the first call fills the policy's verdict cache
    return [time_call(call, seconds) for _ in range(rounds)]


def report(name: str, size: int, samples: list[float]) -> None:
    median = statistics.median(samples)
    print(
        f"{name:>5} {size:>8} {median:>11.1f} {min(samples):>9.1f} {max(samples):>9.1f}"
        f" {median / size:>10.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per case (default 7)")
    parser.add_argument("--seconds", type=float, default=0.4, help="CPU seconds of a round")
    args = parser.parse_args(argv)
    policy = EndpointPolicy(ALLOWLIST)
    print(f"parse_notification from {sys.modules[parse_notification.__module__].__file__}")
    columns = ("devices", 8), ("median us", 11), ("min us", 9), ("max us", 9), ("us/device", 10)
    print(f"{'case':>5} " + " ".join(f"{name:>{width}}" for name, width in columns))
    for size in SIZES:
        pool = [message(size) for _ in range(max(2, COLD_KEYS // size))]
        report("cold", size, measure(pool, policy, args.rounds, args.seconds))
        report("warm", size, measure(pool[:1], policy, args.rounds, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
