"""The operator scripts, run as real subprocesses against the real broker."""

from __future__ import annotations

import asyncio
import json
import re
import stat
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from push_service.config import Settings
from push_service.endpoints import EndpointPolicy
from push_service.models import parse_notification
from push_service.topology import Topology, declare_topology
from push_service.vapid import generate_private_key, load_private_key, public_key_b64
from tests.conftest import ServiceFactory
from tests.support import (
    RABBITMQ_URL,
    ROOT,
    Rabbit,
    assert_clean_failure,
    free_port,
    unique,
    wait_until,
)
from tests.support import run_script as run

SCRIPTS = (
    "generate_vapid_keys",
    "publish_notification",
    "rabbitmq_inspector",
    "replay_dead_letters",
    "demo",
)
VENV_PYTHON = ROOT / ".venv/bin/python"
BAD_PASSWORD = "hunter2-never-print-me"


def fake_subscription(endpoint: str) -> dict[str, Any]:
    """A well-formed PushSubscription (a real P-256 point) for an endpoint nobody serves."""
    return {
        "endpoint": endpoint,
        "expirationTime": None,
        "keys": {
            "p256dh": public_key_b64(generate_private_key()),
            "auth": "AAECAwQFBgcICQoLDA0ODw",
        },
    }


@pytest.fixture
async def queue(rabbit: Rabbit) -> AsyncIterator[str]:
    """A unique queue declared exactly as the service declares it; deleted afterwards."""
    name = unique("test.scripts")
    await declare_topology(rabbit.connection, Topology(name))
    yield name
    await rabbit.delete(name, f"{name}.dlq")


# --- --help -----------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS)
async def test_help(script: str, tmp_path: Path) -> None:
    result = await run(script, "--help", cwd=tmp_path)
    assert result.code == 0, result.err
    assert result.out.startswith("usage:")
    assert result.err == ""


def readme_scripts() -> list[str]:
    """Every script in scripts/ that the README (or .env.example) mentions."""
    text = (ROOT / "README.md").read_text() + (ROOT / ".env.example").read_text()
    names = set(re.findall(r"\b\w+\.(?:py|sh)\b", text))
    return sorted(name for name in names if (ROOT / "scripts" / name).is_file())


def test_the_readme_names_the_operator_scripts() -> None:
    assert {f"{name}.py" for name in SCRIPTS} <= set(readme_scripts())


@pytest.mark.parametrize("name", readme_scripts())
def test_readme_scripts_are_executable_in_git_and_on_disk(name: str) -> None:
    path = ROOT / "scripts" / name
    assert path.stat().st_mode & stat.S_IXUSR, f"{name} is not executable"
    staged = subprocess.run(
        ["git", "ls-files", "-s", f"scripts/{name}"], cwd=ROOT, capture_output=True, text=True
    )
    if staged.stdout:  # a fresh checkout gets the mode git has
        assert staged.stdout.startswith("100755"), staged.stdout


@pytest.mark.skipif(not VENV_PYTHON.exists(), reason="no .venv in the checkout (make install)")
@pytest.mark.parametrize("name", [n for n in readme_scripts() if n.endswith(".py")])
async def test_readme_python_scripts_run_directly_with_the_project_venv(
    name: str, tmp_path: Path
) -> None:
    """`scripts/x.py --help` as the README shows it, with no venv on PATH."""
    proc = await asyncio.create_subprocess_exec(
        str(ROOT / "scripts" / name),
        "--help",
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith("usage:")


async def test_without_the_venv_the_error_names_it(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    copy = tmp_path / "scripts" / "publish_notification.py"
    copy.write_bytes((ROOT / "scripts/publish_notification.py").read_bytes())
    copy.chmod(0o755)
    proc = await asyncio.create_subprocess_exec(
        str(copy), "--help", cwd=tmp_path, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 127
    assert ".venv/bin/python" in err.decode()


@pytest.mark.parametrize("command", ["count", "peek"])
async def test_inspector_subcommand_help(command: str, tmp_path: Path) -> None:
    result = await run("rabbitmq_inspector", command, "--help", cwd=tmp_path)
    assert result.code == 0 and "--json" in result.out


# --- generate_vapid_keys ------------------------------------------------------------------


async def test_generated_env_lines_load_as_a_matching_pair(tmp_path: Path) -> None:
    result = await run("generate_vapid_keys", cwd=tmp_path)
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    assert [line.split("=", 1)[0] for line in lines] == ["VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY"]
    env_file = tmp_path / ".env"
    env_file.write_text(result.out)

    settings = Settings.from_env(environ={}, env_file=env_file)
    key = load_private_key(settings)  # also checks that the public key matches

    assert public_key_b64(key) == settings.vapid_public_key
    assert settings.vapid_private_key == lines[0].split("=", 1)[1]
    again = await run("generate_vapid_keys", cwd=tmp_path)
    assert again.out != result.out


async def test_generated_json_and_pem_file(tmp_path: Path) -> None:
    pem = tmp_path / "vapid.pem"
    result = await run("generate_vapid_keys", "--json", "--pem", str(pem), cwd=tmp_path)
    assert result.code == 0, result.err
    pair = result.json()

    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert pem.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    from_raw = load_private_key(
        Settings(vapid_private_key=pair["private_key"], vapid_public_key=pair["public_key"])
    )
    from_pem = load_private_key(
        Settings(vapid_private_key=str(pem), vapid_public_key=pair["public_key"])
    )
    assert from_raw.private_numbers() == from_pem.private_numbers()

    # Never clobbers an existing key file unless asked to.
    before = pem.read_bytes()
    refused = await run("generate_vapid_keys", "--pem", str(pem), cwd=tmp_path)
    assert_clean_failure(refused)
    assert "exists" in refused.err and pem.read_bytes() == before
    forced = await run("generate_vapid_keys", "--pem", str(pem), "--force", cwd=tmp_path)
    assert forced.code == 0 and pem.read_bytes() != before
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600


# --- publish + inspect -----------------------------------------------------------------


async def test_publish_then_count_and_peek_leave_the_message_in_place(
    tmp_path: Path, rabbit: Rabbit, queue: str
) -> None:
    subscription = fake_subscription("http://localhost:9/push/abc")
    sub_file = tmp_path / "sub.json"
    sub_file.write_text(json.dumps(subscription))
    env = {
        "RABBITMQ_QUEUE_NAME": queue,
        "PUSH_ENDPOINT_ALLOWLIST": "localhost",
        "PUSH_ALLOW_HTTP": "true",
    }
    published = await run(
        "publish_notification",
        "--subscription",
        str(sub_file),
        "--title",
        "Hello",
        "--body",
        "World",
        "--action-url",
        "https://example.com/x",
        "--user-id",
        "u-1",
        "--ttl",
        "120",
        "--urgency",
        "high",
        "--topic",
        "news",
        cwd=tmp_path,
        env=env,
    )
    assert published.code == 0, published.err
    notification_id = published.out.strip()
    assert len(notification_id) == 36  # a UUID4

    assert await rabbit.count(queue) == 1
    counted = await run("rabbitmq_inspector", "count", "--json", cwd=tmp_path, env=env)
    assert counted.code == 0, counted.err
    states = {q["name"]: q for q in counted.json()["queues"]}
    assert states[queue]["messages"] == 1 and states[queue]["consumers"] == 0
    assert states[f"{queue}.dlq"]["messages"] == 0

    peeked = await run("rabbitmq_inspector", "peek", "--json", cwd=tmp_path, env=env)
    assert peeked.code == 0, peeked.err
    [shown] = peeked.json()["messages"]
    assert shown["message_id"] == notification_id
    assert shown["body"]["notification_id"] == notification_id
    assert shown["body"]["devices"] == [
        {"endpoint": subscription["endpoint"], "keys": subscription["keys"]}
    ]
    text = await run("rabbitmq_inspector", "peek", cwd=tmp_path, env=env)
    assert notification_id in text.out

    # Still there after two peeks, and what is there is the contract's message.
    assert await rabbit.count(queue) == 1
    again = await run("rabbitmq_inspector", "count", cwd=tmp_path, env=env)
    assert f"{queue}: 1 ready, 0 consumers" in again.out
    message = await rabbit.get(queue)
    assert message is not None
    assert message.header.properties.delivery_mode == 2
    assert message.header.properties.timestamp is not None
    body = orjson.loads(message.body)
    assert body["ttl"] == 120 and body["urgency"] == "high" and body["topic"] == "news"
    assert body["user_id"] == "u-1" and body["action_url"] == "https://example.com/x"
    parsed = parse_notification(message.body, EndpointPolicy(("localhost",), allow_http=True))
    assert parsed.notification_id == notification_id and len(parsed.devices) == 1


async def test_publish_from_stdin_and_inline_json_with_given_id(
    tmp_path: Path, rabbit: Rabbit, queue: str
) -> None:
    first = fake_subscription("https://fcm.googleapis.com/fcm/send/one")
    second = fake_subscription("https://fcm.googleapis.com/fcm/send/two")
    notification_id = unique("given")
    result = await run(
        "publish_notification",
        "--subscription",
        "-",
        "--subscription-json",
        json.dumps(second),
        "--title",
        "T",
        "--id",
        notification_id,
        "--queue",
        queue,
        cwd=tmp_path,
        stdin=json.dumps(first).encode(),
    )
    assert result.code == 0, result.err
    assert result.out.strip() == notification_id
    message = await rabbit.get(queue)
    assert message is not None
    body = orjson.loads(message.body)
    assert [d["endpoint"] for d in body["devices"]] == [first["endpoint"], second["endpoint"]]


async def test_invalid_messages_are_refused_before_publishing(
    tmp_path: Path, rabbit: Rabbit, queue: str
) -> None:
    local = json.dumps(fake_subscription("http://localhost:9/push"))
    cases: list[tuple[list[str], str]] = [
        (["--subscription-json", local], "endpoint_not_allowed"),  # default allowlist, https
        (["--subscription-json", "{nope"], "not valid JSON"),
        (["--subscription-json", '{"endpoint": "https://fcm.googleapis.com/x"}'], "invalid_keys"),
        (["--subscription", str(tmp_path / "missing.json")], "cannot read"),
        ([], "--subscription"),
        (["--subscription-json", local, "--allow-any-endpoint", "--topic", "a b"], "topic"),
        (["--subscription-json", local, "--allow-any-endpoint", "--id", "bad id"], "id"),
    ]
    for extra, expected in cases:
        result = await run(
            "publish_notification", "--title", "T", "--queue", queue, *extra, cwd=tmp_path
        )
        assert_clean_failure(result)
        assert result.code == 2, (extra, result)
        assert expected in result.err, (extra, result.err)
    assert await rabbit.count(queue) == 0

    allowed = await run(
        "publish_notification",
        "--title",
        "T",
        "--queue",
        queue,
        "--subscription-json",
        local,
        "--allow-any-endpoint",
        cwd=tmp_path,
    )
    assert allowed.code == 0, allowed.err
    assert await rabbit.count(queue) == 1


async def test_publish_to_a_missing_queue_fails_unless_declared(
    tmp_path: Path, rabbit: Rabbit
) -> None:
    name = unique("test.scripts.missing")
    sub = json.dumps(fake_subscription("https://fcm.googleapis.com/fcm/send/x"))
    args = ("--title", "T", "--subscription-json", sub, "--queue", name)
    try:
        missing = await run("publish_notification", *args, cwd=tmp_path)
        assert_clean_failure(missing)
        assert missing.code == 1 and "does not exist" in missing.err

        declared = await run("publish_notification", *args, "--declare", cwd=tmp_path)
        assert declared.code == 0, declared.err
        assert await rabbit.count(name) == 1
        assert await rabbit.count(f"{name}.dlq") == 0
        # Declared with the service's arguments: declaring it the service's way again agrees.
        assert await declare_topology(rabbit.connection, Topology(name)) == []
    finally:
        await rabbit.delete(name, f"{name}.dlq")


async def test_peek_dlq_shows_the_death_reason_and_keeps_the_message(
    tmp_path: Path, service_factory: ServiceFactory, rabbit: Rabbit
) -> None:
    service = await service_factory()
    await rabbit.publish(service.queue, b"{not json")
    dlq = f"{service.queue}.dlq"

    async def dead_lettered() -> bool:
        return await rabbit.count(dlq) == 1

    await wait_until(dead_lettered, message="the bad message in the DLQ")
    env = {"RABBITMQ_QUEUE_NAME": service.queue}

    peeked = await run(
        "rabbitmq_inspector", "peek", "--dlq", "-n", "5", "--json", cwd=tmp_path, env=env
    )
    assert peeked.code == 0, peeked.err
    [shown] = peeked.json()["messages"]
    assert shown["headers"]["x-death-reason"].startswith("invalid_json")
    assert shown["headers"]["x-original-queue"] == service.queue
    assert shown["body"] == "{not json"
    text = await run("rabbitmq_inspector", "peek", "--dlq", cwd=tmp_path, env=env)
    assert "header x-death-reason: invalid_json" in text.out

    assert await rabbit.count(dlq) == 1
    counted = await run("rabbitmq_inspector", "count", "--json", cwd=tmp_path, env=env)
    states = {q["name"]: q for q in counted.json()["queues"]}
    assert states[dlq]["messages"] == 1
    assert states[service.queue] == {
        "name": service.queue,
        "exists": True,
        "messages": 0,
        "consumers": 1,
    }


async def test_peek_on_an_empty_or_missing_queue(tmp_path: Path, queue: str) -> None:
    empty = await run("rabbitmq_inspector", "peek", "--queue", queue, "--json", cwd=tmp_path)
    assert empty.code == 0 and empty.json()["messages"] == []
    missing_name = unique("test.scripts.none")
    missing = await run("rabbitmq_inspector", "peek", "--queue", missing_name, cwd=tmp_path)
    assert_clean_failure(missing)
    assert "does not exist" in missing.err
    counted = await run("rabbitmq_inspector", "count", "--queue", missing_name, cwd=tmp_path)
    assert counted.code == 1 and "does not exist" in counted.out


# --- broker unreachable, bad credentials, bad configuration -------------------------------


def publish_args(queue: str) -> list[str]:
    sub = json.dumps(fake_subscription("https://fcm.googleapis.com/fcm/send/x"))
    return ["--title", "T", "--subscription-json", sub, "--queue", queue]


async def test_closed_port_gives_one_clear_line_without_the_password(tmp_path: Path) -> None:
    url = f"amqp://admin:{BAD_PASSWORD}@127.0.0.1:{free_port()}/"
    runs = [
        ("rabbitmq_inspector", ["count"]),
        ("rabbitmq_inspector", ["peek", "--dlq"]),
        ("publish_notification", publish_args("q")),
    ]
    for script, args in runs:
        by_env = await run(script, *args, cwd=tmp_path, env={"RABBITMQ_URL": url})
        by_flag = await run(script, *args, "--url", url, cwd=tmp_path)
        for result in (by_env, by_flag):
            assert_clean_failure(result, BAD_PASSWORD)
            assert result.code == 1
            assert "cannot connect to RabbitMQ at amqp://***:***@127.0.0.1:" in result.err


async def test_wrong_password_is_reported_without_echoing_it(tmp_path: Path) -> None:
    url = RABBITMQ_URL.replace("guest:guest", f"guest:{BAD_PASSWORD}")
    for script, args in [
        ("rabbitmq_inspector", ["count"]),
        ("publish_notification", publish_args("q")),
    ]:
        result = await run(script, *args, cwd=tmp_path, env={"RABBITMQ_URL": url})
        assert_clean_failure(result, BAD_PASSWORD)
        assert "ACCESS_REFUSED" in result.err or "Authentication" in result.err


async def test_an_unanswering_broker_times_out(tmp_path: Path) -> None:
    """A listener that never speaks AMQP: the connect timeout, not a hang."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await run(
            "rabbitmq_inspector",
            "count",
            "--timeout",
            "1",
            "--url",
            f"amqp://guest:{BAD_PASSWORD}@127.0.0.1:{port}/",
            cwd=tmp_path,
        )
    finally:
        server.close()
    assert_clean_failure(result, BAD_PASSWORD)
    assert "no answer in 1s" in result.err


async def test_bad_configuration_exits_2(tmp_path: Path) -> None:
    result = await run(
        "rabbitmq_inspector",
        "count",
        cwd=tmp_path,
        env={"RABBITMQ_URL": f"http://u:{BAD_PASSWORD}@h/"},
    )
    assert_clean_failure(result, BAD_PASSWORD)
    assert result.code == 2 and "RABBITMQ_URL" in result.err
    usage = await run("rabbitmq_inspector", "peek", "-n", "0", cwd=tmp_path)
    assert usage.code == 2 and "Traceback" not in usage.err
