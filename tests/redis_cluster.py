"""A throwaway Redis Cluster of three primaries on loopback (Debian's redis-server).

Own ports (each with its cluster bus port, +10000), a password, config and data under
one temporary directory; the slots are assigned with `redis-cli --cluster create`.
Stopped and removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as redis

from tests.redis_sentinel import RedisProcess
from tests.support import wait_until

BUS_OFFSET = 10000


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + BUS_OFFSET < 65536 and _free(port + BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair for a cluster node")


@dataclass
class RedisCluster:
    base: Path
    password: str
    nodes: list[RedisProcess]

    @property
    def node_list(self) -> str:
        """REDIS_CLUSTER_NODES for the service."""
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    @property
    def url(self) -> str:
        """REDIS_URL for the service: only the password counts with cluster nodes."""
        return f"redis://:{self.password}@cluster-host-ignored.invalid:1/0"

    def start(self) -> None:
        for node in self.nodes:
            node.start(
                [
                    'save ""',
                    "appendonly no",
                    "cluster-enabled yes",
                    f"cluster-config-file nodes-{node.port}.conf",
                    "cluster-node-timeout 2000",
                    f"requirepass {self.password}",
                    f"masterauth {self.password}",
                    f"dbfilename {node.name}.rdb",
                ]
            )

    async def create(self) -> None:
        async def answering() -> bool:
            try:
                for node in self.nodes:
                    async with node.client(self.password) as client:
                        await client.ping()
            except redis.ConnectionError:
                return False
            return True

        await wait_until(answering, 20, interval=0.05, message="the cluster nodes to start")
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        argv = ["redis-cli", "-a", self.password, "--no-auth-warning", "--cluster", "create",
                *addresses, "--cluster-replicas", "0", "--cluster-yes"]  # fmt: skip
        await asyncio.to_thread(subprocess.run, argv, check=True, capture_output=True, timeout=60)

        async def formed() -> bool:
            for node in self.nodes:
                async with node.client(self.password) as client:
                    info: Any = await client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
                if "cluster_state:ok" not in str(info):
                    return False
            return True

        await wait_until(formed, 30, interval=0.1, message="the cluster to cover every slot")

    async def stop(self) -> None:
        for node in self.nodes:
            await node.stop()


@contextlib.asynccontextmanager
async def redis_cluster(primaries: int = 3) -> AsyncIterator[RedisCluster]:
    assert shutil.which("redis-server") and shutil.which("redis-cli"), "needs redis-server"
    base = Path(tempfile.mkdtemp(prefix="pstest-rcluster-"))
    cluster = RedisCluster(
        base,
        secrets.token_hex(12),
        [RedisProcess(base, "node", port=cluster_port()) for _ in range(primaries)],
    )
    try:
        cluster.start()
        await cluster.create()
        yield cluster
    finally:
        await cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
