"""scripts/demo.py (`make demo`) end to end: its own push service, the real service, a push."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import aiormq
import pytest

from push_service.config import Settings
from push_service.vapid import load_private_key, public_key_b64
from tests.support import RABBITMQ_URL, run_script, unique


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

    # Its queue is gone afterwards.
    queue = re.search(r"queue (demo\.push\.[0-9a-f]+)", out)
    assert queue is not None
    connection = await aiormq.connect(RABBITMQ_URL)
    try:
        channel = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
            await channel.queue_declare(queue.group(1), passive=True)
    finally:
        await connection.close()
