"""Child processes of a script (demo.py): started with their output in a log file,
stopped with SIGTERM, then SIGKILL.

Not a script: imported as a sibling module.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

from script_support import ScriptError

STOP_SECONDS = 40.0  # the service drains for up to SHUTDOWN_GRACE_SECONDS (25 s) first


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    """A child process whose output goes to `log`."""

    name: str
    proc: asyncio.subprocess.Process
    log: Path

    @classmethod
    async def start(
        cls, name: str, command: list[str], cwd: Path, env: dict[str, str] | None, log: Path
    ) -> Process:
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                *command, cwd=cwd, env=env, stdout=out, stderr=out
            )
        return cls(name, proc, log)

    def check_running(self) -> None:
        if self.proc.returncode is not None:
            output = self.log.read_text(errors="replace")
            raise ScriptError(f"{self.name} exited with {self.proc.returncode}:\n{output}")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_SECONDS):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
