"""What /proc says about a process and the machine (Linux only).

CPU time is utime + stime of every thread of a process (/proc/PID/stat), in clock
ticks (10 ms): a round of a few seconds at one core has hundreds of ticks, well
under 1 % of resolution.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

TICK = 1 / os.sysconf("SC_CLK_TCK")
SHARED_SERVER_PORTS = (5672, 6379)  # the machine's RabbitMQ and Redis


def _stat_fields(pid: int) -> list[str]:
    # The command name may hold spaces and parentheses: split after the last ')'.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process has used so far."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) * TICK


def state(pid: int) -> str:
    """R, S, T (stopped), Z, ... ('' when the process is gone)."""
    try:
        return _stat_fields(pid)[0]
    except OSError:
        return ""


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine_busy_seconds() -> float:
    """CPU-seconds all CPUs have spent busy since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) * TICK


def _listening_inodes(ports: tuple[int, ...]) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if fields[3] == "0A" and port in ports:  # 0A: LISTEN
                inodes.add(fields[9])
    return inodes


@functools.cache
def listening_pids(ports: tuple[int, ...]) -> list[int]:
    """The processes listening on these TCP ports (other nodes on other ports are not
    ours to count: they are other sessions' test servers)."""
    sockets = {f"socket:[{inode}]" for inode in _listening_inodes(ports)}
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in sockets for fd in (entry / "fd").iterdir()):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _own_cpu_seconds() -> float:
    """This process, the children it has reaped, and the children still running."""
    times = os.times()
    total = times.user + times.system + times.children_user + times.children_system
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if _stat_fields(int(entry.name))[1] == me:
                total += cpu_seconds(int(entry.name))
        except OSError:
            continue
    return total


def _pids_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    return total


@dataclass
class LoadMeter:
    """How many cores everything else on the machine used over a window: all busy CPU
    time minus the benchmark's own processes and the shared RabbitMQ and Redis (whose
    load from other sessions is then not seen: a noise indicator, not an account)."""

    wall: float
    busy: float
    own: float
    servers: float
    server_pids: list[int]

    @classmethod
    def start(cls) -> LoadMeter:
        pids = listening_pids(SHARED_SERVER_PORTS)
        return cls(
            time.monotonic(), machine_busy_seconds(), _own_cpu_seconds(), _pids_cpu(pids), pids
        )

    def others(self) -> float:
        wall = time.monotonic() - self.wall
        busy = machine_busy_seconds() - self.busy
        own = _own_cpu_seconds() - self.own
        servers = _pids_cpu(self.server_pids) - self.servers
        return max(0.0, busy - own - servers) / wall if wall > 0 else 0.0
