"""A throwaway three-node RabbitMQ cluster on loopback, from the Debian package's scripts.

It never touches the machine's node (`rabbit@localhost`, ports 5672/25672): each node
has its own name, AMQP and distribution ports, Erlang cookie (in its own HOME), config
and enabled-plugins files (empty: no plugins), and data and log directories under one
temporary directory. The scripts are run directly (`/usr/lib/rabbitmq/bin`), not
through `/usr/sbin/rabbitmq-server`, which would switch to the `rabbitmq` user and its
cookie. The first node starts alone; once it is up, the others start together and join
it on first boot through classic-config peer discovery. A stopped node restarts with
its data and rejoins by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import free_port, wait_until

SCRIPTS = Path("/usr/lib/rabbitmq/bin")
BOOT_TIMEOUT = 120.0  # three nodes booting at once on a busy two-core machine


@dataclass
class RabbitNode:
    name: str  # the short node name; the node is `name@localhost`
    base: Path
    amqp_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def node(self) -> str:
        return f"{self.name}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def env(self, home: Path) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "TMPDIR")
        env = {key: os.environ[key] for key in keep if key in os.environ}
        env.update(
            {
                "HOME": str(home),  # its .erlang.cookie is this cluster's own
                "RABBITMQ_CONF_ENV_FILE": str(home / "rabbitmq-env.conf"),  # empty
                "RABBITMQ_NODENAME": self.node,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.amqp_port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.base / "log"),
                "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.base / "plugins-expand"),
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                    "-kernel inet_dist_use_interface {127,0,0,1}"
                ),
                "ERL_EPMD_ADDRESS": "127.0.0.1",
                "ERL_CRASH_DUMP": str(self.base / "erl_crash.dump"),
            }
        )
        return env

    def write_config(self, seed: RabbitNode | None) -> None:
        lines = [f"listeners.tcp.local = 127.0.0.1:{self.amqp_port}"]
        if seed is not None:
            lines += [
                "cluster_formation.peer_discovery_backend = classic_config",
                f"cluster_formation.classic_config.nodes.1 = {seed.node}",
                # The seed may still be booting: keep asking (every 0.5 s) for long enough.
                f"cluster_formation.discovery_retry_limit = {int(BOOT_TIMEOUT * 2)}",
                "cluster_formation.discovery_retry_interval = 500",
            ]
        (self.base / "log").mkdir(parents=True, exist_ok=True)
        (self.base / "rabbitmq.conf").write_text("\n".join(lines) + "\n")

    def start(self, home: Path) -> None:
        """Start the node in the background (a new session, so its VM can be signalled)."""
        assert not self.running, f"{self.node} is already running"
        with (self.base / "console.log").open("ab") as console:
            self.proc = subprocess.Popen(
                [str(SCRIPTS / "rabbitmq-server")],
                env=self.env(home),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=self.base,
                start_new_session=True,
            )

    async def wait_listening(self, timeout: float = BOOT_TIMEOUT) -> None:
        async def accepts() -> bool:
            assert self.running, f"{self.node} exited while booting: {self.console()}"
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.amqp_port)
            except OSError:
                return False
            writer.close()
            return True

        await wait_until(accepts, timeout, interval=0.2, message=f"{self.node} to listen")

    def stop_nowait(self) -> None:
        """SIGTERM: the script stops the node gracefully (clients get CONNECTION_FORCED)."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    async def wait_stopped(self, timeout: float = 60.0) -> None:
        proc = self.proc
        if proc is None:
            return
        try:
            await wait_until(lambda: proc.poll() is not None, timeout, message=f"{self.node} stop")
        except AssertionError:
            os.killpg(proc.pid, signal.SIGKILL)
            await wait_until(lambda: proc.poll() is not None, 10, message=f"{self.node} killed")
        finally:
            # Whatever the node left in its process group (the VM, its port helpers).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def console(self) -> str:
        path = self.base / "console.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@dataclass
class RabbitCluster:
    home: Path
    nodes: list[RabbitNode]

    @property
    def urls(self) -> str:
        """RABBITMQ_URL for the service: every node, in order."""
        return ",".join(node.url for node in self.nodes)

    async def rabbitmqctl(self, node: RabbitNode, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            str(SCRIPTS / "rabbitmqctl"),
            "-n",
            node.node,
            *args,
            env=node.env(self.home),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        async with asyncio.timeout(60):
            out, _ = await proc.communicate()
        text = out.decode(errors="replace")
        assert proc.returncode == 0, f"rabbitmqctl {args}: {text}"
        return text

    async def running_nodes(self, via: RabbitNode) -> set[str]:
        status = json.loads(await self.rabbitmqctl(via, "cluster_status", "--formatter", "json"))
        return set(status["running_nodes"])

    async def wait_formed(self) -> None:
        """Every node running and in one cluster."""
        for node in self.nodes:
            await node.wait_listening()
        everyone = {node.node for node in self.nodes}
        live = next(node for node in self.nodes if node.running)
        await wait_until(
            lambda: self._has(live, everyone), 60, interval=0.5, message="the cluster to form"
        )

    async def _has(self, via: RabbitNode, nodes: set[str]) -> bool:
        return nodes <= await self.running_nodes(via)

    async def queue_leader(self, queue: str, via: RabbitNode) -> str:
        out = await self.rabbitmqctl(
            via, "list_queues", "name", "type", "leader", "--formatter", "json"
        )
        rows = [row for row in json.loads(out) if row["name"] == queue]
        assert rows and rows[0]["type"] == "quorum", rows
        return str(rows[0]["leader"])

    async def stop(self) -> None:
        for node in self.nodes:
            node.stop_nowait()
        for node in self.nodes:
            await node.wait_stopped()


@contextlib.asynccontextmanager
async def rabbit_cluster(size: int = 3) -> AsyncIterator[RabbitCluster]:
    """Start a cluster in a temporary directory; stopped and removed afterwards, always."""
    assert (SCRIPTS / "rabbitmq-server").is_file(), (
        f"the cluster tests need Debian's rabbitmq-server package ({SCRIPTS} is missing)"
    )
    home = Path(tempfile.mkdtemp(prefix="pstest-rabbit-"))
    tag = secrets.token_hex(3)
    nodes = [RabbitNode(f"pstest-{tag}-{chr(97 + i)}", home / chr(97 + i)) for i in range(size)]
    cluster = RabbitCluster(home, nodes)
    try:
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        (home / "rabbitmq-env.conf").write_text("")
        (home / "enabled_plugins").write_text("[].\n")
        seed, *others = nodes
        seed.write_config(None)
        seed.start(home)
        # Joining a seed that is still booting can crash it (3.10: incompatible_feature_flags,
        # "All replicas on diskfull nodes are not active yet"): the others start once it is up.
        await seed.wait_listening()
        for node in others:
            node.write_config(seed)
            node.start(home)
        await cluster.wait_formed()
        yield cluster
    finally:
        await cluster.stop()
        shutil.rmtree(home, ignore_errors=True)


@contextlib.asynccontextmanager
async def broker_stopped(cluster: RabbitCluster) -> AsyncIterator[None]:
    """The first node's RabbitMQ application stopped for the block, then started again."""
    node = cluster.nodes[0]
    await cluster.rabbitmqctl(node, "stop_app")
    try:
        yield
    finally:
        await cluster.rabbitmqctl(node, "start_app")
        await cluster.rabbitmqctl(node, "await_startup")
