"""scripts/demo.py (`make demo`) end to end: its own push service, the real service, a push."""

from __future__ import annotations

import asyncio
import re
import signal
import stat
import sys
from pathlib import Path

import aiohttp
import aiormq
import pytest

from push_service.config import Settings
from push_service.vapid import load_private_key, public_key_b64
from tests.support import RABBITMQ_URL, ROOT, VapidPair, run_script, script_env, unique


async def test_demo_shows_the_decrypted_push_and_the_status_record(tmp_path: Path) -> None:
    """Without VAPID keys it uses (here: creates) the development key file, as `make run` does."""
    key_file = tmp_path / "dev-key.pem"
    title = unique("Demo title")
    result = await run_script(
        "demo",
        "--title",
        title,
        cwd=tmp_path,
        env={"VAPID_KEY_FILE": str(key_file)},
        timeout=120,
    )
    assert result.code == 0, result.both
    out = result.out

    assert "push_service says: sent (1 of 1 devices" in out
    decrypted = out.split("decrypted:")[1].split("status record")[0]
    assert f'"title": "{title}"' in decrypted  # what web-push-testing decrypted
    assert '"status": "sent"' in out.split("status record")[1]

    # The same key pair as the service's development key: subscribed with its public key.
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    public = public_key_b64(load_private_key(Settings(vapid_key_file=str(key_file))))
    shown = re.search(r"VAPID public key (\S+)\.\.\.", out)
    assert shown is not None and public.startswith(shown.group(1))

    # Its queues are gone afterwards.
    queue = re.search(r"queue (demo\.push\.[0-9a-f]+)", out)
    assert queue is not None
    await assert_deleted(queue.group(1))


async def test_keep_running_until_ctrl_c_then_stop_everything(
    tmp_path: Path, vapid: VapidPair
) -> None:
    """--keep-running: the servers stay up after the push; Ctrl-C stops them and cleans up."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "scripts/demo.py"),
        "--keep-running",
        cwd=tmp_path,
        env=script_env(VAPID_PRIVATE_KEY=vapid.private),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(60):
        while not lines or not lines[-1].startswith("Still running"):
            lines.append((await proc.stdout.readline()).decode())
            assert lines[-1], "the demo ended instead of staying up"
    push_url = lines[0].split(": ", 1)[1].strip()
    service_url, queue = re.findall(r"(http://\S+), queue (\S+),", lines[1])[0]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{service_url}/ready") as response:
            assert response.status == 200  # still serving

        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
        assert proc.returncode == 0, (out + err).decode()
        assert err.decode().strip().endswith("stopping")

        for url in (push_url, service_url):
            with pytest.raises(aiohttp.ClientConnectionError):
                await session.get(url)
    await assert_deleted(queue)


async def assert_deleted(queue: str) -> None:
    connection = await aiormq.connect(RABBITMQ_URL)
    try:
        for name in (queue, f"{queue}.dlq"):
            channel = await connection.channel()
            with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
                await channel.queue_declare(name, passive=True)
    finally:
        await connection.close()
