"""One push_service process on its own queue and Redis prefix, against the sink.

`python` chooses the code: the service's own interpreter (this worktree) or the venv
of another revision (bench.compare). The benchmark reads its CPU time and peak RSS
from /proc, its counters from `/metrics`, and freezes it (SIGSTOP) while it publishes
a round's backlog, so that publishing never competes with it for the CPU.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import time
from pathlib import Path

import aiohttp

from bench import amqp, procfs
from bench.data import make_vapid
from bench.env import BENCH_DIR, child_env

READY_TIMEOUT = 60.0
# An empty working directory: `python -m` would import a push_service/ folder in the
# current one instead of the interpreter's installed revision, and the service reads
# a developer's .env from there.
RUN_DIR = BENCH_DIR / "run"


class ServiceError(RuntimeError):
    """The service did not start, or did not finish a round."""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    def __init__(self, label: str, python: str, cafile: str, prefetch: int, log_dir: Path) -> None:
        self.label = label
        self.python = python
        # A name for queues, files and notification ids: a revision may hold '/' or '~'.
        self.slug = re.sub(r"[^A-Za-z0-9.@-]", "-", label)
        self.queue = amqp.queue_name(self.slug)
        self.prefix = amqp.redis_prefix(self.slug)
        self.port = free_port()
        self.log_path = log_dir / f"{self.slug}.log"
        self.vapid_key = make_vapid()["private_key"]
        # /metrics is an internal endpoint: a token, sent to revisions without them too.
        self.token = secrets.token_urlsafe(24)
        self.env = child_env(
            cafile,
            PORT=str(self.port), HOST="127.0.0.1", NODE_ENV="development",
            RABBITMQ_URL=amqp.AMQP_URL, RABBITMQ_QUEUE_NAME=self.queue,
            REDIS_URL=amqp.REDIS_URL, REDIS_KEY_PREFIX=self.prefix,
            VAPID_PRIVATE_KEY=self.vapid_key, VAPID_EMAIL="bench@example.com",
            PUSH_ENDPOINT_ALLOWLIST="127.0.0.1", LOG_LEVEL="WARNING",
            CONSUMER_PREFETCH=str(prefetch), MAX_MESSAGE_BYTES=str(16 * 1024 * 1024),
            API_TOKENS=self.token,
        )  # fmt: skip
        self.proc: asyncio.subprocess.Process | None = None
        self.http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=10),
            headers={"Authorization": f"Bearer {self.token}"},
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    async def start(self) -> None:
        """Start it and wait until it consumes (it declares its own queues)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                self.python, "-m", "push_service", env=self.env, stdout=log, stderr=log,
                cwd=RUN_DIR,
            )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                break
            try:
                if (await self.metrics()).get("push_consumer_connected") == 1.0:
                    return
            except (aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(0.1)  # polling a starting process: no event to wait on
        raise ServiceError(f"{self.label} is not consuming; see {self.log_path}")

    async def metrics(self) -> dict[str, float]:
        async with self.http.get(f"http://127.0.0.1:{self.port}/metrics") as response:
            text = await response.text()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    async def consumed(self) -> float:
        metrics = await self.metrics()
        return sum(v for k, v in metrics.items() if k.startswith("push_messages_consumed_total"))

    async def wait_consumed(self, total: float, timeout: float) -> None:
        """Wait until the service has recorded the outcome of `total` messages."""
        deadline = time.monotonic() + timeout
        while (done := await self.consumed()) < total:
            if time.monotonic() > deadline:
                raise ServiceError(f"{self.label}: {done:.0f} of {total:.0f} messages done")
            await asyncio.sleep(0.005)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.returncode is not None:
            raise ServiceError(f"{self.label} exited {self.proc.returncode}; see {self.log_path}")

    def cpu_seconds(self) -> float:
        return procfs.cpu_seconds(self.pid)

    def peak_rss_mb(self) -> float:
        return procfs.peak_rss_mb(self.pid)

    async def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        while procfs.state(self.pid) not in ("T", "t"):
            await asyncio.sleep(0.001)  # the kernel stops it within a scheduler tick

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    async def stop(self) -> None:
        await self.http.close()
        if self.proc is None or self.proc.returncode is not None:
            return
        self.thaw()
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 60)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    async def cleanup(self) -> None:
        await amqp.delete_queues([self.queue])
        await amqp.delete_keys(self.prefix)
