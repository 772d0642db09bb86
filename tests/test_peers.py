"""Peer services publishing with their own AMQP clients: the README's snippets, run as written.

pika, aio-pika and Node's amqplib declare the queue the way peers do (durable, nothing
else), before the service starts and while it runs; the service is ready and delivers
what they publish to web-push-testing.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import ServiceFactory
from tests.support import RABBITMQ_URL, ROOT, PushServer, VapidPair, final_record, unique

CLIENTS = ("pika", "aio-pika", "amqplib")
NODE_MODULES = ROOT / "tests/peers/node_modules"
RUN_PYTHON = """
import sys, json
publish_notification(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3])
"""
RUN_ASYNCIO = """
import asyncio, sys, json
asyncio.run(publish_notification(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]))
"""
RUN_NODE = """
publishNotification(JSON.parse(process.argv[2]), process.argv[3], process.argv[4])
  .catch((err) => { console.error(err); process.exit(1); });
"""


def readme_snippet(client: str) -> str:
    """The code block after `<!-- snippet: <client> -->` in the README."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(rf"<!-- snippet: {re.escape(client)} -->\n```\w+\n(.*?)```", readme, re.S)
    assert found, f"no {client} snippet in the README"
    return found.group(1)


async def publish_as_peer(client: str, message: dict[str, Any], queue: str, tmp: Path) -> None:
    """Run the README's snippet for `client` with this message and queue; it must succeed."""
    snippet = readme_snippet(client)
    if client == "amqplib":
        script = tmp / f"peer-{unique('js')}.js"
        script.write_text(snippet + RUN_NODE)
        command = ["node", str(script)]
        env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
    else:
        script = tmp / f"peer_{unique('py').replace('-', '_')}.py"
        script.write_text(snippet + (RUN_ASYNCIO if "async def" in snippet else RUN_PYTHON))
        command = [sys.executable, str(script)]
        env = dict(os.environ)
    proc = await asyncio.create_subprocess_exec(
        *command,
        orjson.dumps(message).decode(),
        queue,
        RABBITMQ_URL,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, f"{client} snippet failed:\n{out.decode()}{err.decode()}"


async def new_message(pushserver: PushServer, vapid: VapidPair, title: str) -> tuple[dict, str]:
    subscription, client_hash = await pushserver.subscribe(vapid.public)
    message = {
        "notification_id": unique("peer"),
        "user_id": "u-1",
        "devices": [subscription],
        "title": title,
        "body": "published by a peer",
        "action_url": "https://example.com/orders/1",
    }
    return message, client_hash


async def assert_delivered(
    base_url: str, pushserver: PushServer, message: dict, client_hash: str
) -> None:
    record = await final_record(base_url, message["notification_id"])
    assert record["status"] == "sent" and record["sent"] == 1, record
    [received] = await pushserver.messages(client_hash)
    assert received["title"] == message["title"]
    assert received["notification_id"] == message["notification_id"]


@pytest.mark.parametrize("client", CLIENTS)
async def test_peer_declares_and_publishes_before_the_service_starts(
    client: str,
    tmp_path: Path,
    service_factory: ServiceFactory,
    pushserver: PushServer,
    vapid: VapidPair,
) -> None:
    queue = unique("test.peers")
    message, client_hash = await new_message(pushserver, vapid, f"before, {client}")
    await publish_as_peer(client, message, queue, tmp_path)  # creates the queue

    service = await service_factory(RABBITMQ_QUEUE_NAME=queue)  # ready, or this fails

    await assert_delivered(service.base_url, pushserver, message, client_hash)
    again, again_hash = await new_message(pushserver, vapid, f"again, {client}")
    await publish_as_peer(client, again, queue, tmp_path)
    await assert_delivered(service.base_url, pushserver, again, again_hash)
    assert "PRECONDITION_FAILED" not in service.logs()


async def test_peers_declare_and_publish_while_the_service_runs(
    tmp_path: Path,
    service_factory: ServiceFactory,
    pushserver: PushServer,
    vapid: VapidPair,
) -> None:
    service = await service_factory()
    for client in CLIENTS:
        message, client_hash = await new_message(pushserver, vapid, f"after, {client}")
        await publish_as_peer(client, message, service.queue, tmp_path)
        await assert_delivered(service.base_url, pushserver, message, client_hash)
    assert "PRECONDITION_FAILED" not in service.logs()
