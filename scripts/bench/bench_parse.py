#!/usr/bin/env python3
"""Cost of validating one queue message: `parse_notification` in CPU microseconds.

Times the parser that the consumer runs on every message, for a message with one
device and one with 1,000 (distinct endpoints and keys), each over several rounds
in this process, and prints the median and the spread of the rounds. The endpoint
policy and the messages are built once, as the consumer holds them, so a verdict
or key cache that the parser keeps across messages counts as it would in service.

    .venv/bin/python scripts/bench/bench_parse.py [--rounds 7] [--seconds 0.5]

Runs against whichever `push_service` is importable, so the same script measures
another checkout: `PYTHONPATH=/path/to/other/checkout python scripts/bench/...`.
"""

from __future__ import annotations

import argparse
import base64
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
    """CPU microseconds per call, over as many calls as fit in about `seconds` of CPU.

    CPU time of this thread, not wall time: on a shared machine other processes then
    add little but cache noise.
    """
    calls, started = 0, time.thread_time()
    while True:
        call()
        calls += 1
        elapsed = time.thread_time() - started
        if elapsed >= seconds:
            return elapsed / calls * 1e6


def measure(body: bytes, policy: EndpointPolicy, rounds: int, seconds: float) -> list[float]:
    def call() -> object:
        return parse_notification(body, policy, 10_000)

    call()  # warm-up: the first call fills whatever the parser caches
    return [time_call(call, seconds) for _ in range(rounds)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per size (default 7)")
    parser.add_argument("--seconds", type=float, default=0.5, help="length of a round")
    args = parser.parse_args(argv)
    policy = EndpointPolicy(ALLOWLIST)
    module = sys.modules[parse_notification.__module__].__file__
    print(f"parse_notification from {module}")
    print(f"{'devices':>8} {'median us':>11} {'min us':>9} {'max us':>9} {'us/device':>10}  (CPU)")
    for size in SIZES:
        samples = measure(message(size), policy, args.rounds, args.seconds)
        median = statistics.median(samples)
        print(
            f"{size:>8} {median:>11.1f} {min(samples):>9.1f} {max(samples):>9.1f}"
            f" {median / size:>10.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
