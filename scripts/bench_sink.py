#!/usr/bin/env -S sh -c 'exec "${0%/*}/../.venv/bin/python" "$0" "$@"'
"""A fast local HTTPS web-push sink for benchmarks (loopback only).

It plays the push service: ``POST /push/{id}`` is answered ``201 Created`` (or
another status, ``--status``) as fast as possible, over HTTP/1.1 keep-alive TLS.
It is a raw asyncio protocol (uvloop when available) with a minimal HTTP/1.1
parser, so one core takes well over 10,000 requests/s; it runs in its own
process so that it never shares an interpreter with the client under test.

Checks per push (``--no-validate`` turns them off): ``Content-Encoding:
aes128gcm``, a ``TTL`` header with a non-negative integer, an ``Authorization:
vapid ...`` header, and a body of 1..4096 bytes. A push that fails them gets
``400`` and is counted under ``rejected`` with the reason.

Endpoints:
  POST /push/{id}          the push; counted per id (and its arrival time recorded
                           with ``--record-times``)
  GET  /stats              JSON: totals, per-id counts, rejections, the sink's CPU
                           seconds; ``?times=1`` adds ``times`` = [[id, t_ns], ...]
                           (arrival clock: ``clock`` field; ``monotonic`` is
                           CLOCK_MONOTONIC, shared by all processes on Linux, i.e.
                           ``time.monotonic_ns()`` in another Python process);
                           ``?reset=1`` resets the counters after reading.
  POST /reset              resets the counters (``204``).

CLI:
  python scripts/bench_sink.py --port 0 --cert-dir DIR
      prints one JSON line {"port": ..., "cafile": ..., "pid": ...} when ready.
  python scripts/bench_sink.py load --port P --cafile F [-n 30000] [-c 64]
      a separate-process load generator (raw TLS keep-alive client) that reports
      requests/s and the sink's CPU cost per request (its one-core capacity).

Python helpers (for scripts/bench.py): ``start_sink(...)`` (context manager
yielding ``Sink(proc, port, cafile)``), ``sink_stats``, ``sink_reset``,
``run_load`` and ``measure_sink_capacity``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
PUSH_BODY_LIMIT = 4096

REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    410: "Gone",
    411: "Length Required",
    413: "Payload Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


# --------------------------------------------------------------------------- certs


def generate_certs(cert_dir: str | os.PathLike[str]) -> tuple[str, str, str]:
    """Write a throw-away CA and a server certificate for 127.0.0.1/localhost/::1.

    Returns (cafile, certfile, keyfile). The CA (not the leaf) is what clients
    trust: ``cafile`` works for requests (``verify=``), ssl/aiohttp
    (``create_default_context(cafile=)``) and Node (``NODE_EXTRA_CA_CERTS``).
    P-256 keys keep the (few, keep-alive) handshakes cheap.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d = Path(cert_dir)
    d.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before = now - datetime.timedelta(minutes=5)
    not_after = now + datetime.timedelta(days=2)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "push_service bench sink CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    cafile, certfile, keyfile = d / "ca.pem", d / "cert.pem", d / "key.pem"
    cafile.write_bytes(ca_cert.public_bytes(pem))
    certfile.write_bytes(cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    keyfile.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    keyfile.chmod(0o600)
    return str(cafile), str(certfile), str(keyfile)


# --------------------------------------------------------------------------- server


class SinkState:
    def __init__(self, *, status: int, validate: bool, record_times: bool, clock: str) -> None:
        self.status = status
        self.validate = validate
        self.record_times = record_times
        self.clock = clock
        self.now_ns = time.monotonic_ns if clock == "monotonic" else time.time_ns
        self.response = _response(status, b"")
        self.connections_opened = 0
        self.connections_open = 0
        self.reset()

    def reset(self) -> None:
        self.total = 0  # every POST /push/* that reached the handler
        self.accepted = 0  # answered with the configured status
        self.rejected: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.times: list[tuple[str, int]] = []
        self.bytes_in = 0
        self.first_ns = 0
        self.last_ns = 0
        self.cpu_at_reset = time.process_time()
        self.connections_at_reset = self.connections_opened

    def stats(self, with_times: bool) -> dict[str, Any]:
        dup = sum(1 for c in self.counts.values() if c > 1)
        out: dict[str, Any] = {
            "total": self.total,
            "accepted": self.accepted,
            "status": self.status,
            "rejected": sum(self.rejected.values()),
            "rejected_reasons": self.rejected,
            "ids": len(self.counts),
            "ids_with_duplicates": dup,
            "counts": self.counts,
            "bytes_in": self.bytes_in,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "clock": self.clock,
            "cpu_s": time.process_time() - self.cpu_at_reset,
            "connections_opened": self.connections_opened - self.connections_at_reset,
            "connections_open": self.connections_open,
            "pid": os.getpid(),
        }
        if with_times:
            out["times"] = self.times
        return out


def _response(
    status: int, body: bytes, ctype: bytes = b"application/json", close: bool = False
) -> bytes:
    reason = REASONS.get(status, "Status").encode()
    head = b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\n" % (status, reason, len(body))
    if body:
        head += b"Content-Type: " + ctype + b"\r\n"
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


class SinkProtocol(asyncio.Protocol):
    __slots__ = ("buf", "state", "transport")

    def __init__(self, state: SinkState) -> None:
        self.state = state
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.state.connections_opened += 1
        self.state.connections_open += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections_open -= 1
        self.transport = None

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        out: list[bytes] = []
        close = False
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    out.append(_response(431, b"", close=True))
                    close = True
                break
            head = bytes(buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            try:
                method, target, version = lines[0].split(" ", 2)
            except ValueError:
                out.append(_response(400, b'{"error":"bad request line"}', close=True))
                close = True
                break
            headers: dict[str, str] = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            body_start = end + 4
            te = headers.get("transfer-encoding")
            if te is not None and te.lower() != "identity":
                try:
                    parsed = _parse_chunked(buf, body_start)
                except ValueError:
                    out.append(_response(400, b'{"error":"bad chunked body"}', close=True))
                    close = True
                    break
                if parsed is None:
                    break  # need more data
                body, consumed = parsed
            else:
                try:
                    clen = int(headers.get("content-length", "0"))
                except ValueError:
                    clen = -1
                if clen < 0 or clen > MAX_BODY:
                    out.append(_response(413 if clen > 0 else 400, b"", close=True))
                    close = True
                    break
                if len(buf) < body_start + clen:
                    break  # need more data
                body = bytes(buf[body_start : body_start + clen])
                consumed = body_start + clen
            del buf[:consumed]
            conn = headers.get("connection", "").lower()
            want_close = conn == "close" or (version == "HTTP/1.0" and conn != "keep-alive")
            out.append(self.handle(method, target, headers, body, want_close))
            if want_close:
                close = True
                break
        if out and self.transport is not None:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
            if close:
                self.transport.close()

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes, close: bool
    ) -> bytes:
        st = self.state
        if target.startswith("/push/"):
            if method != "POST":
                return _response(405, b"", close=close)
            t = st.now_ns()
            pid = target[6:].split("?", 1)[0]
            st.total += 1
            st.bytes_in += len(body)
            if st.validate:
                reason = _invalid(headers, body)
                if reason is not None:
                    st.rejected[reason] = st.rejected.get(reason, 0) + 1
                    return _response(400, b'{"reason":"%s"}' % reason.encode(), close=close)
            if not st.first_ns:
                st.first_ns = t
            st.last_ns = t
            st.accepted += 1
            counts = st.counts
            counts[pid] = counts.get(pid, 0) + 1
            if st.record_times:
                st.times.append((pid, t))
            return st.response if not close else _response(st.status, b"", close=True)
        path, _, query = target.partition("?")
        if path == "/stats" and method == "GET":
            q = dict(p.partition("=")[::2] for p in query.split("&") if p)
            data = json.dumps(st.stats(q.get("times") in ("1", "true"))).encode()
            if q.get("reset") in ("1", "true"):
                st.reset()
            return _response(200, data, close=close)
        if path == "/reset" and method == "POST":
            st.reset()
            return _response(204, b"", close=close)
        if path == "/health":
            return _response(200, b'{"status":"ok"}', close=close)
        return _response(404, b"", close=close)


def _invalid(headers: dict[str, str], body: bytes) -> str | None:
    if headers.get("content-encoding", "").lower() != "aes128gcm":
        return "content-encoding"
    ttl = headers.get("ttl")
    if ttl is None or not ttl.isdigit():
        return "ttl"
    if not headers.get("authorization", "").lower().startswith("vapid "):
        return "authorization"
    if not 0 < len(body) <= PUSH_BODY_LIMIT:
        return "body-length"
    return None


def _parse_chunked(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """Decode a chunked body at buf[pos:] -> (body, end offset); None: incomplete.
    Raises ValueError when malformed."""
    parts: list[bytes] = []
    total = 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)  # ValueError: malformed
        pos = eol + 2
        if size == 0:
            # trailers end with an empty line
            end = buf.find(b"\r\n", pos)
            while end >= 0 and end != pos:
                pos = end + 2
                end = buf.find(b"\r\n", pos)
            if end < 0:
                return None
            return b"".join(parts), end + 2
        total += size
        if total > MAX_BODY:
            raise ValueError("chunked body too large")
        if len(buf) < pos + size + 2:
            return None
        parts.append(bytes(buf[pos : pos + size]))
        pos += size + 2


async def serve(args: argparse.Namespace) -> None:
    if args.cert_dir:
        cafile, certfile, keyfile = generate_certs(args.cert_dir)
        tmp = None
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench-sink-")
        cafile, certfile, keyfile = generate_certs(tmp.name)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    ctx.set_alpn_protocols(["http/1.1"])
    state = SinkState(
        status=args.status,
        validate=not args.no_validate,
        record_times=args.record_times,
        clock=args.clock,
    )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SinkProtocol(state),
        host=args.host,
        port=args.port,
        ssl=ctx,
        backlog=1024,
        reuse_address=True,
    )
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if args.exit_on_stdin_eof:
        _watch_stdin(loop, stop)
    print(
        json.dumps(
            {
                "port": port,
                "cafile": cafile,
                "pid": os.getpid(),
                "loop": type(loop).__module__.split(".")[0],
            }
        ),
        flush=True,
    )
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.max_seconds)
    except TimeoutError:
        print("bench_sink: --max-seconds reached, stopping", file=sys.stderr)
    server.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.wait_closed(), 2)
    if tmp is not None:
        tmp.cleanup()


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Stop when stdin (a pipe from the parent) reaches EOF: the parent is gone."""
    fd = sys.stdin.fileno()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            stop.set()

    try:
        os.set_blocking(fd, False)
        loop.add_reader(fd, readable)
    except (OSError, ValueError, NotImplementedError, PermissionError):
        # not a pollable fd (e.g. a regular file): fall back to a blocking thread
        def blocking() -> None:
            with contextlib.suppress(OSError):
                while os.read(fd, 4096):
                    pass
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=blocking, daemon=True, name="stdin-eof").start()


def _run(coro: Any, use_uvloop: bool) -> Any:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(coro)
    return asyncio.run(coro)


# --------------------------------------------------------------------------- helpers


class Sink(NamedTuple):
    proc: subprocess.Popen[bytes]
    port: int
    cafile: str

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def endpoint(self, sub_id: object) -> str:
        return f"{self.base_url}/push/{sub_id}"


@contextlib.contextmanager
def start_sink(
    port: int = 0,
    cert_dir: str | os.PathLike[str] | None = None,
    *,
    python: str | None = None,
    status: int = 201,
    validate: bool = True,
    record_times: bool = False,
    clock: str = "monotonic",
    uvloop: bool = True,
    cpu: int | None = None,
    max_seconds: float = 3600,
    ready_timeout: float = 30,
) -> Iterator[Sink]:
    """Start the sink in its own process; yield ``Sink(proc, port, cafile)``.

    The sink stops when the block exits, and also by itself when this process
    dies (its stdin is a pipe from us) or after ``max_seconds``. ``cpu`` pins the
    sink to one CPU (``os.sched_setaffinity``). Without ``cert_dir`` the
    certificates go to a temporary directory removed on exit.
    """
    tmp = None
    if cert_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-sink-")
        cert_dir = tmp.name
    cmd = [
        python or sys.executable,
        str(Path(__file__).resolve()),
        "--port", str(port),
        "--cert-dir", str(cert_dir),
        "--status", str(status),
        "--clock", clock,
        "--max-seconds", str(max_seconds),
        "--exit-on-stdin-eof",
    ]  # fmt: skip
    if not validate:
        cmd.append("--no-validate")
    if record_times:
        cmd.append("--record-times")
    if not uvloop:
        cmd.append("--no-uvloop")
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        line = _readline_with_timeout(proc, ready_timeout)
        info = json.loads(line)
        yield Sink(proc, int(info["port"]), str(info["cafile"]))
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        if tmp is not None:
            tmp.cleanup()


def _readline_with_timeout(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    result: list[bytes] = []
    assert proc.stdout is not None
    stdout = proc.stdout
    t = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    if not result or not result[0]:
        raise RuntimeError(
            f"bench sink did not become ready within {timeout}s (exit code {proc.poll()})"
        )
    return result[0]


def _ssl_context(cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


def sink_stats(
    port: int, cafile: str, *, times: bool = False, reset: bool = False, host: str = "127.0.0.1"
) -> dict[str, Any]:
    """GET /stats from a running sink (``times``: include [[id, t_ns], ...])."""
    q = "&".join(k for k, on in (("times=1", times), ("reset=1", reset)) if on)
    url = f"https://{host}:{port}/stats" + (f"?{q}" if q else "")
    with urllib.request.urlopen(url, context=_ssl_context(cafile), timeout=30) as r:
        result: dict[str, Any] = json.loads(r.read())
    return result


def sink_reset(port: int, cafile: str, *, host: str = "127.0.0.1") -> None:
    """POST /reset: zero the counters, the arrival times and the CPU baseline."""
    req = urllib.request.Request(f"https://{host}:{port}/reset", data=b"", method="POST")
    with urllib.request.urlopen(req, context=_ssl_context(cafile), timeout=30) as r:
        r.read()


# --------------------------------------------------------------------------- load generator


class _LoadClient(asyncio.Protocol):
    """One keep-alive connection sending one request at a time (no pipelining)."""

    def __init__(self, gen: _LoadGen) -> None:
        self.gen = gen
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._next()

    def _next(self) -> None:
        req = self.gen.take()
        if req is None:
            assert self.transport is not None
            self.transport.close()
            return
        assert self.transport is not None
        self.transport.write(req)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            status = int(head[0].split(" ", 2)[1])
            clen = 0
            for line in head[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    clen = int(v)
            if len(self.buf) < end + 4 + clen:
                return
            del self.buf[: end + 4 + clen]
            self.gen.status[status] = self.gen.status.get(status, 0) + 1
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


class _LoadGen:
    def __init__(self, n: int, body_size: int) -> None:
        self.n = n
        self.sent = 0
        self.status: dict[int, int] = {}
        body = os.urandom(body_size)
        self.reqs = [
            (
                b"POST /push/load-%d HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"TTL: 60\r\nContent-Encoding: aes128gcm\r\n"
                b"Content-Type: application/octet-stream\r\n"
                b"Authorization: vapid t=eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.x.y, k=BA\r\n"
                b"Content-Length: %d\r\n\r\n" % (i, len(body))
            )
            + body
            for i in range(64)
        ]

    def take(self) -> bytes | None:
        if self.sent >= self.n:
            return None
        self.sent += 1
        return self.reqs[self.sent % len(self.reqs)]


async def _load(
    host: str, port: int, cafile: str, n: int, connections: int, body_size: int
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    ctx = _ssl_context(cafile)
    warm = _LoadGen(min(2000, n), body_size)
    protos = [
        (await loop.create_connection(lambda: _LoadClient(warm), host, port, ssl=ctx))[1]
        for _ in range(connections)
    ]
    await asyncio.gather(*(p.done for p in protos))
    gen = _LoadGen(n, body_size)
    # fresh connections, handshakes before the clock starts (keep-alive from here on)
    conns = []
    for _ in range(connections):
        tr, pr = await loop.create_connection(lambda: _Idle(), host, port, ssl=ctx)
        conns.append((tr, pr))
    t0 = time.perf_counter()
    clients = []
    for tr, _ in conns:
        c = _LoadClient(gen)
        tr.set_protocol(c)
        c.connection_made(tr)
        clients.append(c)
    await asyncio.wait_for(asyncio.gather(*(c.done for c in clients)), timeout=300)
    elapsed = time.perf_counter() - t0
    return {"n": n, "elapsed_s": elapsed, "rate": n / elapsed, "status": gen.status}


class _Idle(asyncio.Protocol):
    pass


def run_load(
    port: int,
    cafile: str,
    n: int = 30000,
    connections: int = 64,
    *,
    body_size: int = 400,
    host: str = "127.0.0.1",
    use_uvloop: bool = True,
) -> dict[str, Any]:
    """Drive the sink from *this* process: n POSTs over ``connections`` keep-alive
    TLS connections (one request in flight per connection), after a 2,000-request
    warm-up. Returns {"n", "elapsed_s", "rate", "status": {code: count}}."""
    result: dict[str, Any] = _run(_load(host, port, cafile, n, connections, body_size), use_uvloop)
    return result


def measure_sink_capacity(
    port: int,
    cafile: str,
    n: int = 30000,
    connections: int = 64,
    *,
    python: str | None = None,
) -> dict[str, Any]:
    """Load the running sink from a separate process (``load`` subcommand) and
    report the achieved rate plus the sink's own CPU cost: ``sink_cpu_us_per_req``
    and ``sink_capacity_per_core`` (= 1 / CPU seconds per request), the rate the
    sink could take with one whole core to itself."""
    sink_reset(port, cafile)
    cmd = [
        python or sys.executable,
        str(Path(__file__).resolve()),
        "load",
        "--port", str(port),
        "--cafile", cafile,
        "-n", str(n),
        "-c", str(connections),
    ]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    st = sink_stats(port, cafile)
    cpu = float(st["cpu_s"])
    result["sink_total"] = st["total"]
    result["sink_accepted"] = st["accepted"]
    result["sink_cpu_s"] = cpu
    if st["total"]:
        result["sink_cpu_us_per_req"] = cpu / st["total"] * 1e6
        result["sink_capacity_per_core"] = st["total"] / cpu if cpu else float("inf")
    return result


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "load":
        lp = argparse.ArgumentParser(prog="bench_sink.py load", description=run_load.__doc__)
        lp.add_argument("--host", default="127.0.0.1")
        lp.add_argument("--port", type=int, required=True)
        lp.add_argument("--cafile", required=True)
        lp.add_argument("-n", type=int, default=30000)
        lp.add_argument("-c", "--connections", type=int, default=64)
        lp.add_argument("--body-size", type=int, default=400)
        lp.add_argument("--no-uvloop", action="store_true")
        la = lp.parse_args(argv[1:])
        res = run_load(
            la.port,
            la.cafile,
            la.n,
            la.connections,
            body_size=la.body_size,
            host=la.host,
            use_uvloop=not la.no_uvloop,
        )
        print(json.dumps(res), flush=True)
        return 0

    p = argparse.ArgumentParser(description="Local HTTPS web-push sink for benchmarks.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--cert-dir", help="where to write ca.pem/cert.pem/key.pem (default: temp)")
    p.add_argument("--status", type=int, default=201, help="status for accepted pushes")
    p.add_argument("--no-validate", action="store_true", help="skip the header/body checks")
    p.add_argument("--record-times", action="store_true", help="record (id, t_ns) per push")
    p.add_argument("--clock", choices=("monotonic", "realtime"), default="monotonic")
    p.add_argument("--no-uvloop", action="store_true")
    p.add_argument("--cpu", type=int, help="pin the sink to this CPU")
    p.add_argument("--max-seconds", type=float, default=3600, help="stop by itself after this")
    p.add_argument("--exit-on-stdin-eof", action="store_true")
    args = p.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    _run(serve(args), not args.no_uvloop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
