"""A fast local HTTPS push service for benchmarks (loopback only), run as its own process.

`POST /push/{id}` is answered `201 Created` (or `--status`) as fast as possible over
HTTP/1.1 keep-alive TLS: a raw asyncio protocol (uvloop when present) with a minimal
HTTP/1.1 parser, about 20 us of CPU per push, so it never limits what it measures.

Checks per push (`--no-validate` turns them off): `Content-Encoding: aes128gcm`, a
numeric `TTL`, `Authorization: vapid ...` and a body of 1..4096 bytes; a push that
fails them gets `400` and is counted under `rejected` with the reason.

  POST /push/{id}   a push, counted per id (arrival time kept with --record-times)
  GET  /stats       JSON totals since the last reset (`sink_control.SinkStats`);
                    `?counts=1` adds the per-id counts, `?times=1` the arrival times
                    [[id, t_ns], ...] on CLOCK_MONOTONIC (`time.monotonic_ns()` in
                    any process of the machine)
  GET  /wait?count=N&timeout=S   answers the stats once N pushes were accepted
                    (`reached` false after S seconds): the end of a round, no polling
  POST /reset       zero the counters (204)

With `--dark`, a second port (`dark_port` in the ready line) accepts connections and
reads requests but never answers one: a push service in an outage that still accepts
connections, the kind only a timeout or stall detection notices.

`python -m bench.sink --cert-dir DIR` prints one JSON line {"port", "cafile", "pid"}
when ready; `sink_control.start_sink()` does that for you.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import ssl
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.sink_certs import generate_certs

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
PUSH_BODY_LIMIT = 4096
REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 410: "Gone", 413: "Payload Too Large",
           431: "Request Header Fields Too Large", 500: "Internal Server Error"}  # fmt: skip


def response(status: int, body: bytes = b"", close: bool = False) -> bytes:
    reason = REASONS.get(status, "Status").encode()
    head = b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\n" % (status, reason, len(body))
    if body:
        head += b"Content-Type: application/json\r\n"
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


@dataclass(eq=False)
class _Wait:
    """A `/wait` request not answered yet."""

    count: int
    protocol: SinkProtocol
    timer: asyncio.TimerHandle | None = None


class SinkState:
    def __init__(self, *, status: int, validate: bool, record_times: bool) -> None:
        self.status = status
        self.validate = validate
        self.record_times = record_times
        self.response = response(status)
        self.connections_opened = 0
        self.waiters: list[_Wait] = []  # by count, the smallest first
        self.reset()

    def reset(self) -> None:
        self.total = 0  # every POST /push/*
        self.accepted = 0  # answered with the configured status
        self.rejected: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.times: list[tuple[str, int]] = []
        self.first_ns = self.last_ns = 0
        self.cpu_at_reset = time.process_time()
        self.connections_at_reset = self.connections_opened
        waiters, self.waiters = self.waiters, []
        for wait in waiters:
            self._answer(wait)

    def stats(self, query: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "total": self.total,
            "accepted": self.accepted,
            "rejected": sum(self.rejected.values()),
            "rejected_reasons": self.rejected,
            "ids": len(self.counts),
            "ids_with_duplicates": sum(1 for c in self.counts.values() if c > 1),
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "cpu_s": time.process_time() - self.cpu_at_reset,
            "connections_opened": self.connections_opened - self.connections_at_reset,
            "pid": os.getpid(),
        }
        if query.get("counts") == "1":
            out["counts"] = self.counts
        if query.get("times") == "1":
            out["times"] = self.times
        return out

    def stats_body(self, query: dict[str, str]) -> bytes:
        return json.dumps(self.stats(query)).encode()

    def push(self, push_id: str, headers: dict[str, str], body: bytes) -> bytes:
        now = time.monotonic_ns()
        self.total += 1
        if self.validate:
            reason = invalid(headers, body)
            if reason is not None:
                self.rejected[reason] = self.rejected.get(reason, 0) + 1
                return response(400, b'{"reason":"%s"}' % reason.encode())
        self.first_ns = self.first_ns or now
        self.last_ns = now
        self.accepted += 1
        self.counts[push_id] = self.counts.get(push_id, 0) + 1
        if self.record_times:
            self.times.append((push_id, now))
        if self.waiters and self.accepted >= self.waiters[0].count:
            self._wake()
        return self.response

    def wait(self, waiter: SinkProtocol, count: int, timeout: float) -> bytes | None:
        if self.accepted >= count:
            return self.stats_body({})
        wait = _Wait(count, waiter)
        # Its own timer, cancelled once answered: a control connection is kept alive, and
        # a stale timer of an earlier wait on it must not answer a later one early.
        wait.timer = asyncio.get_running_loop().call_later(timeout, self._expire, wait)
        self.waiters.append(wait)
        self.waiters.sort(key=lambda w: w.count)
        return None

    def _wake(self) -> None:
        while self.waiters and self.accepted >= self.waiters[0].count:
            self._answer(self.waiters.pop(0))

    def _expire(self, wait: _Wait) -> None:
        if wait in self.waiters:
            self.waiters.remove(wait)
            self._answer(wait)

    def _answer(self, wait: _Wait) -> None:
        if wait.timer is not None:
            wait.timer.cancel()
        wait.protocol.answer(self.stats_body({}))


def invalid(headers: dict[str, str], body: bytes) -> str | None:
    if headers.get("content-encoding", "").lower() != "aes128gcm":
        return "content-encoding"
    if not headers.get("ttl", "").isdigit():
        return "ttl"
    if not headers.get("authorization", "").lower().startswith("vapid "):
        return "authorization"
    if not 0 < len(body) <= PUSH_BODY_LIMIT:
        return "body-length"
    return None


class BadRequest(Exception):
    """The request cannot be parsed: answered with this status, then the connection closes."""

    def __init__(self, status: int) -> None:
        self.status = status


Request = tuple[str, str, str, dict[str, str], bytes]


def parse_request(buf: bytearray) -> Request | None:
    """Take one complete request off the front of `buf` (None: not all here yet)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise BadRequest(431)
        return None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    headers = dict(_header(line) for line in lines[1:])
    try:
        method, target, version = lines[0].split(" ", 2)
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise BadRequest(400) from None
    if "transfer-encoding" in headers or not 0 <= length <= MAX_BODY:
        raise BadRequest(413 if length > MAX_BODY else 400)  # every client here sends a length
    if len(buf) < end + 4 + length:
        return None
    body = bytes(buf[end + 4 : end + 4 + length])
    del buf[: end + 4 + length]
    return method, target, version, headers, body


def _header(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name.strip().lower(), value.strip()


class SinkProtocol(asyncio.Protocol):
    def __init__(self, state: SinkState) -> None:
        self.state = state
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.state.connections_opened += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def answer(self, body: bytes) -> None:
        if self.transport is not None:
            self.transport.write(response(200, body))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out: list[bytes] = []
        try:
            while (request := parse_request(self.buf)) is not None:
                answer = self.handle(*request)
                if answer is not None:
                    out.append(answer)
        except BadRequest as exc:
            out.append(response(exc.status, close=True))
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
            if out[-1].endswith(b"Connection: close\r\n\r\n"):
                self.transport.close()

    def handle(
        self, method: str, target: str, version: str, headers: dict[str, str], body: bytes
    ) -> bytes | None:
        path, _, query_string = target.partition("?")
        if path.startswith("/push/"):
            return self.state.push(path[6:], headers, body) if method == "POST" else response(405)
        query = dict(part.partition("=")[::2] for part in query_string.split("&") if part)
        if path == "/stats" and method == "GET":
            return response(200, self.state.stats_body(query))
        if path == "/wait" and method == "GET":
            timeout = float(query.get("timeout", "60"))
            answer = self.state.wait(self, int(query.get("count", "0")), timeout)
            return None if answer is None else response(200, answer)
        if path == "/reset" and method == "POST":
            self.state.reset()
            return response(204)
        return response(404)


class DarkProtocol(asyncio.Protocol):
    """Reads whatever comes and never answers: the connection stays open, idle."""

    def data_received(self, data: bytes) -> None:
        pass


async def serve(args: argparse.Namespace) -> None:
    cafile, certfile, keyfile = generate_certs(args.cert_dir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    context.set_alpn_protocols(["http/1.1"])
    state = SinkState(
        status=args.status, validate=not args.no_validate, record_times=args.record_times
    )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SinkProtocol(state), "127.0.0.1", args.port, ssl=context, backlog=1024
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Stop with the parent: our stdin is a pipe from it, and EOF means it is gone.
    loop.add_reader(sys.stdin.fileno(), stop.set)
    ready = {"port": server.sockets[0].getsockname()[1], "cafile": cafile, "pid": os.getpid()}
    if args.dark:
        dark = await loop.create_server(DarkProtocol, "127.0.0.1", 0, ssl=context, backlog=1024)
        ready["dark_port"] = dark.sockets[0].getsockname()[1]
    print(json.dumps(ready), flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=args.max_seconds)
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local HTTPS web-push sink for benchmarks.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--cert-dir", required=True, help="where to write the certificates")
    parser.add_argument("--status", type=int, default=201, help="status for accepted pushes")
    parser.add_argument("--no-validate", action="store_true", help="skip the push checks")
    parser.add_argument("--record-times", action="store_true", help="keep each arrival time")
    parser.add_argument("--dark", action="store_true", help="also a port that never answers")
    parser.add_argument("--max-seconds", type=float, default=7200, help="stop by itself after")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args))
    else:
        uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
