"""A throwaway Redis primary, replicas and three sentinels on loopback (Debian's redis-server).

Own ports, a password (`requirepass`/`masterauth`, so that a demoted primary can follow
the new one), and config and data files under one temporary directory; stopped and
removed afterwards. Sentinels are `redis-server --sentinel` with short timeouts, so
that a failover takes a few seconds.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as redis

from tests.support import free_port, wait_until

MASTER = "pstest"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


@dataclass
class RedisProcess:
    base: Path
    role: str  # "primary", "replica" or "sentinel"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"{self.role}-{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, config: list[str]) -> None:
        conf = self.base / f"{self.name}.conf"
        common = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.base}",
            f"logfile {self.base / self.name}.log",
        ]
        conf.write_text("\n".join(common + config) + "\n")
        argv = ["redis-server", str(conf)] + (["--sentinel"] if self.role == "sentinel" else [])
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, cwd=self.base)

    def client(self, password: str | None = None, db: int = 0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=password, db=db, decode_responses=True
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last replication, no goodbye to clients."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    async def stop(self) -> None:
        if not self.running:
            return
        assert self.proc is not None
        self.proc.terminate()
        proc = self.proc
        try:
            await wait_until(lambda: proc.poll() is not None, 10, message=f"{self.name} to exit")
        except AssertionError:
            proc.kill()
            proc.wait()


@dataclass
class SentinelGroup:
    base: Path
    password: str
    servers: list[RedisProcess]  # the first primary, then its replicas
    sentinels: list[RedisProcess]
    min_replicas_to_write: int = 0

    @property
    def sentinel_list(self) -> str:
        """REDIS_SENTINELS for the service."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def url(self, db: int) -> str:
        """REDIS_URL for the service; its host must not matter when sentinels are set."""
        return f"redis://:{self.password}@redis-host-ignored.invalid:1/{db}"

    def server(self, port: int) -> RedisProcess:
        return next(s for s in self.servers if s.port == port)

    def start(self) -> None:
        primary, *replicas = self.servers
        auth = [f"requirepass {self.password}", f"masterauth {self.password}"]
        config = [
            'save ""',
            "appendonly no",
            f"min-replicas-to-write {self.min_replicas_to_write}",
            *auth,
        ]
        primary.start([*config, f"dbfilename {primary.name}.rdb"])
        for replica in replicas:
            replica.start(
                [
                    *config,
                    f"dbfilename {replica.name}.rdb",
                    f"replicaof 127.0.0.1 {primary.port}",
                ]
            )
        for sentinel in self.sentinels:
            sentinel.start(
                [
                    f"sentinel monitor {MASTER} 127.0.0.1 {primary.port} 2",
                    f"sentinel auth-pass {MASTER} {self.password}",
                    f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}",
                ]
            )

    async def _sentinel_state(self, sentinel: RedisProcess) -> tuple[int, int, bool]:
        """(other sentinels known, replicas known, all replicas in sync with the primary)."""
        async with sentinel.client() as client:
            master = await client.sentinel_master(MASTER)
            replicas = await client.sentinel_slaves(MASTER)
        ready = all(r.get("master-link-status") == "ok" for r in replicas)
        return int(master["num-other-sentinels"]), int(master["num-slaves"]), ready

    async def wait_ready(self) -> None:
        """Every sentinel knows the others and every replica, ready to be promoted."""

        async def ready() -> bool:
            try:
                states = [await self._sentinel_state(s) for s in self.sentinels]
            except (redis.ConnectionError, redis.ResponseError):
                return False
            expected = (len(self.sentinels) - 1, len(self.servers) - 1, True)
            return all(state == expected for state in states)

        await wait_until(ready, 30, interval=0.1, message="the sentinels to see everything")

    async def primary_port(self, sentinel: RedisProcess | None = None) -> int:
        async with (sentinel or self.sentinels[0]).client() as client:
            address: Any = await client.sentinel_get_master_addr_by_name(MASTER)
        return int(address[1])

    async def wait_promoted(self, old_port: int, timeout: float = 30.0) -> int:
        """Until every sentinel names a primary other than `old_port`; returns its port."""

        async def moved() -> int | None:
            ports = {await self.primary_port(s) for s in self.sentinels}
            return ports.pop() if len(ports) == 1 and old_port not in ports else None

        port: int = await wait_until(moved, timeout, interval=0.05, message="a new primary")
        return port

    async def stop(self) -> None:
        for process in self.sentinels + self.servers:
            await process.stop()


@contextlib.asynccontextmanager
async def sentinel_group(
    replicas: int = 1, min_replicas_to_write: int = 0
) -> AsyncIterator[SentinelGroup]:
    """`min_replicas_to_write`: what the servers need to accept a write (README)."""
    assert shutil.which("redis-server"), "the Sentinel tests need redis-server installed"
    base = Path(tempfile.mkdtemp(prefix="pstest-redis-"))
    group = SentinelGroup(
        base,
        secrets.token_hex(12),
        [RedisProcess(base, "primary")] + [RedisProcess(base, "replica") for _ in range(replicas)],
        [RedisProcess(base, "sentinel") for _ in range(3)],
        min_replicas_to_write,
    )
    try:
        group.start()
        await group.wait_ready()
        yield group
    finally:
        await group.stop()
        shutil.rmtree(base, ignore_errors=True)
