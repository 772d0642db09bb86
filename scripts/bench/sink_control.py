"""Starting the sink (bench.sink) as a process and talking to it from the benchmark."""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

from bench.env import child_env


class SinkError(RuntimeError):
    """The sink did not see what a run should have sent it."""


@dataclass(frozen=True)
class Sink:
    proc: subprocess.Popen[bytes]
    port: int
    cafile: str
    dark_port: int = 0  # with start_sink(dark=True): accepts, reads, never answers

    @property
    def dark_url(self) -> str:
        return f"https://127.0.0.1:{self.dark_port}"

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def endpoint(self, push_id: object) -> str:
        return f"{self.base_url}/push/{push_id}"


@contextlib.contextmanager
def start_sink(
    *, record_times: bool = False, dark: bool = False, ready_timeout: float = 30
) -> Iterator[Sink]:
    """The sink in its own process (certificates in a temporary directory), stopped
    when the block exits, or by itself when this process dies."""
    with tempfile.TemporaryDirectory(prefix="bench-sink-") as cert_dir:
        command = [sys.executable, "-m", "bench.sink", "--cert-dir", cert_dir]
        if record_times:
            command.append("--record-times")
        if dark:
            command.append("--dark")
        env = child_env()
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        try:
            info = json.loads(_first_line(proc, ready_timeout))
            yield Sink(proc, int(info["port"]), str(info["cafile"]), int(info.get("dark_port", 0)))
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()


def _first_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    stdout, lines = proc.stdout, []
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not lines or not lines[0]:
        raise SinkError(f"the sink did not start within {timeout:.0f} s (exit {proc.poll()})")
    return lines[0]


class SinkClient:
    """One keep-alive connection's worth of control requests: cheap enough to use
    between and at the end of rounds without disturbing them."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        context = ssl.create_default_context(cafile=sink.cafile)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context, limit=4),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )

    async def __aenter__(self) -> SinkClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.session.close()

    async def reset(self) -> None:
        async with self.session.post(f"{self.sink.base_url}/reset") as response:
            if response.status != 204:
                raise SinkError(f"sink reset answered {response.status}")

    async def stats(self, *, counts: bool = False, times: bool = False) -> dict[str, Any]:
        query = {"counts": "1" if counts else "0", "times": "1" if times else "0"}
        async with self.session.get(f"{self.sink.base_url}/stats", params=query) as response:
            result: dict[str, Any] = await response.json()
        return result

    async def wait(self, count: int, timeout: float) -> dict[str, Any]:
        """The stats once `count` pushes were accepted since the last reset."""
        query = {"count": str(count), "timeout": str(timeout)}
        async with self.session.get(f"{self.sink.base_url}/wait", params=query) as response:
            result: dict[str, Any] = await response.json()
        if result["accepted"] < count:
            raise SinkError(f"only {result['accepted']} of {count} pushes in {timeout:.0f} s")
        return result

    async def expect(self, what: str, count: int) -> dict[str, Any]:
        """The stats, after checking that exactly `count` pushes came, all accepted."""
        stats = await self.stats()
        if stats["accepted"] != count or stats["total"] != count or stats["rejected"]:
            raise SinkError(
                f"{what}: the sink counted {stats['accepted']} accepted of {stats['total']} "
                f"(rejected: {stats['rejected_reasons']}); expected {count}"
            )
        return stats
