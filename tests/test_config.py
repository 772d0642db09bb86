"""Settings: defaults, typed casts, errors that name the variable, `.env`, redaction."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from push_service.config import (
    DEFAULT_ALLOWLIST,
    DEFAULT_LADDER,
    REMOVED,
    Settings,
    read_env_file,
    redact_url,
)
from push_service.errors import ConfigError


def load(**env: str) -> Settings:
    return Settings.from_env(env, env_file=None)


def test_defaults_when_nothing_is_set() -> None:
    s = load()
    assert s.port == 3004
    assert s.node_env == "development" and not s.production
    assert s.rabbitmq_queue_name == "push.queue"
    assert s.dead_letter_queue == "push.queue.dlq"
    assert s.user_service_deactivate_path == "/api/v1/push-subscriptions/deactivate"
    assert s.push_endpoint_allowlist == DEFAULT_ALLOWLIST
    assert "fcm.googleapis.com" in s.push_endpoint_allowlist
    assert s.push_allow_http is False
    assert s.log_level == "INFO"
    assert s.enable_debug is False
    assert s.push_default_ttl_seconds > 0  # never the surprising TTL 0 (PITFALLS)
    assert s.cors_allow_origins == () and s.trusted_proxies == ()


def test_typed_casts() -> None:
    s = load(
        PORT="8080",
        NODE_ENV="Production",
        ENABLE_DEBUG="yes",
        PUSH_ALLOW_HTTP="true",
        SHUTDOWN_GRACE_SECONDS="2.5",
        PUSH_ENDPOINT_ALLOWLIST=" localhost , *.example.com,, ",
        CORS_ALLOW_ORIGINS="https://a.example,https://b.example",
        TRUSTED_PROXIES="10.0.0.0/8, 192.168.1.1",
        LOG_LEVEL="debug",
        STATUS_TTL_SECONDS="3600",
        USER_SERVICE_URL="http://users.local:8080/",
        RABBITMQ_URL="amqps://u:p@broker:5671/vhost",
    )
    assert s.port == 8080 and isinstance(s.port, int)
    assert s.production
    assert s.enable_debug is True and s.push_allow_http is True
    assert s.shutdown_grace_seconds == 2.5
    assert s.push_endpoint_allowlist == ("localhost", "*.example.com")
    assert s.cors_allow_origins == ("https://a.example", "https://b.example")
    assert s.trusted_proxies == ("10.0.0.0/8", "192.168.1.1")
    assert s.log_level == "DEBUG"
    assert s.status_ttl_seconds == 3600
    assert s.user_service_url == "http://users.local:8080"  # trailing slash removed
    assert s.rabbitmq_url == "amqps://u:p@broker:5671/vhost"


def test_empty_allowlist_variable_means_nothing_allowed_not_default() -> None:
    assert load(PUSH_ENDPOINT_ALLOWLIST="").push_endpoint_allowlist == ()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("PORT", "-1"),
        ("PUSH_ALLOW_HTTP", "maybe"),
        ("ENABLE_DEBUG", "2"),
        ("NODE_ENV", "staging"),
        ("LOG_LEVEL", "verbose"),
        ("RABBITMQ_URL", "http://x"),
        ("RABBITMQ_URL", "amqp://[::1"),
        ("RABBITMQ_URL", "amqp://host:99999/"),
        ("REDIS_URL", "amqp://x"),
        ("USER_SERVICE_URL", "ftp://users"),
        ("TRUSTED_PROXIES", "notanip"),
        ("TRUSTED_PROXIES", "10.0.0.1, 300.1.1.1"),
        ("SHUTDOWN_GRACE_SECONDS", "soon"),
        ("SHUTDOWN_GRACE_SECONDS", "-1"),
        ("SHUTDOWN_GRACE_SECONDS", "nan"),
        ("PUSH_RETRY_WINDOW_SECONDS", "inf"),
        ("PUSH_RETRY_LADDER_SECONDS", "1,soon"),
        ("PUSH_RETRY_LADDER_SECONDS", "0"),
        ("PUSH_RETRY_LADDER_SECONDS", "1,nan"),
        ("PUSH_RETRY_LADDER_SECONDS", "3000000"),
        ("PUSH_CIRCUIT_FAILURES", "0"),
        ("PUSH_ORIGIN_CONCURRENCY", "0"),
        ("CONSUMER_PREFETCH", "0"),
        ("STATUS_TTL_SECONDS", "10"),
        ("RABBITMQ_QUEUE_TYPE", "stream"),
        ("RABBITMQ_QUEUE_NAME", "q" * 201),
        ("RABBITMQ_URL", "amqp://a/, http://b/"),
        ("RABBITMQ_URL", "amqp://a/,amqp://b:0/"),
        ("REDIS_SENTINELS", "sentinel:0"),
        ("REDIS_SENTINELS", "s1:26379, user@s2:26379"),
        ("REDIS_SENTINELS", "s1:port"),
        ("REDIS_SENTINELS", "s1/0"),
        ("REDIS_CLUSTER_NODES", "node:0"),
        ("REDIS_CLUSTER_NODES", "user@node:6379"),
        ("FANOUT_CHUNK_SIZE", "0"),
        ("FANOUT_CHUNK_SIZE", "1001"),
    ],
)
def test_bad_values_fail_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(**{name: value})
    assert name in str(info.value)


def test_bad_url_error_does_not_leak_its_password() -> None:
    with pytest.raises(ConfigError) as info:
        load(RABBITMQ_URL="http://user:hunter2secret@x/")
    assert "hunter2secret" not in str(info.value)
    assert "RABBITMQ_URL" in str(info.value)


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\n"
        "\n"
        "PORT=5005\n"
        "export RABBITMQ_QUEUE_NAME='from.file'\n"
        'VAPID_EMAIL="ops@example.com"\n'
        "LOG_LEVEL=WARNING\n",
        encoding="utf-8",
    )
    s = Settings.from_env({"LOG_LEVEL": "ERROR"}, env_file=env_file)
    assert s.port == 5005
    assert s.rabbitmq_queue_name == "from.file"
    assert s.vapid_email == "ops@example.com"
    assert s.log_level == "ERROR"  # environment wins over .env


def test_missing_env_file_is_fine(tmp_path: Path) -> None:
    assert Settings.from_env({}, env_file=tmp_path / "absent.env").port == 3004


def test_env_file_pem_with_literal_newlines_becomes_multiline(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text('KEY="-----BEGIN X-----\\nabc\\n-----END X-----"\n', encoding="utf-8")
    assert read_env_file(env_file)["KEY"] == "-----BEGIN X-----\nabc\n-----END X-----"


def test_env_file_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=1\nthis is not an assignment\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\.env:2"):
        Settings.from_env({}, env_file=env_file)


def test_repr_masks_private_key_and_url_passwords() -> None:
    s = load(
        VAPID_PRIVATE_KEY="c2VjcmV0LXByaXZhdGUta2V5LXZhbHVl",
        RABBITMQ_URL="amqp://user:amqppass@host:5672/vh",
        REDIS_URL="redis://:redispass@[::1]:6379/0",
        USER_SERVICE_URL="https://svc:userpass@users.example",
    )
    text = repr(s)
    for secret in ("c2VjcmV0LXByaXZhdGUta2V5LXZhbHVl", "amqppass", "redispass", "userpass"):
        assert secret not in text
    assert "host:5672" in text and "[::1]:6379" in text
    assert str(s) == text


def test_redact_url() -> None:
    assert redact_url("amqp://user:secret@host/") == "amqp://***:***@host/"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert "p@ss" not in redact_url("amqp://u:p@ss@host:1/")
    assert redact_url("amqp://[::1") == "<unparseable url>"


def test_settings_is_frozen() -> None:
    s = load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]


def test_env_file_comments_after_values(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "PORT=5005            # the port\n"
        'VAPID_EMAIL="ops@example.com"  # quoted, then a comment\n'
        "WELCOME_TITLE='Hi # there'\n"
        "WELCOME_BODY=a#b\n"
        "USER_SERVICE_URL=   # empty, only a comment\n",
        encoding="utf-8",
    )
    s = Settings.from_env({}, env_file=env_file)
    assert s.port == 5005
    assert s.vapid_email == "ops@example.com"
    assert s.welcome_title == "Hi # there"
    assert s.welcome_body == "a#b"
    assert s.user_service_url == ""


def test_the_shipped_env_example_loads_as_the_defaults() -> None:
    example = Path(__file__).resolve().parent.parent / ".env.example"
    from_example = Settings.from_env({}, env_file=example)
    defaults = load()
    for field in dataclasses.fields(Settings):
        if field.name != "vapid_email":
            assert getattr(from_example, field.name) == getattr(defaults, field.name), field.name


# --- the peer-service API and subscriber identity -------------------------------------------

TOKEN = "peer-token-0123456789abcdef"


def test_api_settings_defaults_and_values() -> None:
    s = load()
    assert s.api_tokens == () and s.metrics_port == 0
    assert s.http_read_timeout_seconds > 0
    assert s.subscribe_jwt_user_claim == "sub" and not s.subscribe_jwt_required
    s = load(
        API_TOKENS=f" {TOKEN} ,other-token-0123456789",
        METRICS_PORT="9464",
        HTTP_READ_TIMEOUT_SECONDS="3",
        SUBSCRIBE_JWT_SECRET="x" * 32,
        SUBSCRIBE_JWT_AUDIENCE="push,web",
        SUBSCRIBE_JWT_REQUIRED="true",
    )
    assert s.api_tokens == (TOKEN, "other-token-0123456789")
    assert s.metrics_port == 9464 and s.http_read_timeout_seconds == 3.0
    assert s.subscribe_jwt_audience == ("push", "web") and s.subscribe_jwt_required


def test_repr_masks_api_tokens_and_the_jwt_secret() -> None:
    shown = repr(load(API_TOKENS=TOKEN, SUBSCRIBE_JWT_SECRET="jwt-secret-" + "y" * 30))
    assert TOKEN not in shown and "jwt-secret" not in shown
    assert "api_tokens='***'" in shown and "subscribe_jwt_secret='***'" in shown


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"API_TOKENS": "short-token"}, "API_TOKENS: token 1 is shorter"),
        ({"API_TOKENS": f"{TOKEN},has space 0123456789"}, "API_TOKENS: token 2 has characters"),
        ({"METRICS_PORT": "3004"}, "METRICS_PORT must differ from PORT"),
        ({"METRICS_PORT": "70000"}, "METRICS_PORT"),
        ({"HTTP_READ_TIMEOUT_SECONDS": "0"}, "HTTP_READ_TIMEOUT_SECONDS"),
        ({"SUBSCRIBE_JWT_SECRET": "too-short"}, "SUBSCRIBE_JWT_SECRET must be at least 32"),
        (
            {"SUBSCRIBE_JWT_SECRET": "x" * 32, "SUBSCRIBE_JWT_JWKS_FILE": "/k.json"},
            "set only one of SUBSCRIBE_JWT_SECRET, SUBSCRIBE_JWT_JWKS_FILE",
        ),
        ({"SUBSCRIBE_JWT_AUDIENCE": "push"}, "SUBSCRIBE_JWT_AUDIENCE needs a key"),
        ({"SUBSCRIBE_JWT_REQUIRED": "true"}, "SUBSCRIBE_JWT_REQUIRED needs a key"),
    ],
)
def test_bad_api_settings_fail_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        load(**env)
    assert "has space" not in str(refused.value)  # a token is never echoed


def test_the_retry_ladder_is_sorted_and_deduplicated() -> None:
    assert load(PUSH_RETRY_LADDER_SECONDS="30, 0.2,1,1").push_retry_ladder_seconds == (
        0.2,
        1.0,
        30.0,
    )
    assert load().push_retry_ladder_seconds == DEFAULT_LADDER


@pytest.mark.parametrize("name", sorted(REMOVED))
def test_a_removed_variable_is_a_warning_naming_it(name: str) -> None:
    settings = load(**{name: "60"})
    assert len(settings.warnings) == 1
    assert settings.warnings[0].startswith(f"{name} is no longer used")
    assert load().warnings == ()


# --- clusters: several broker nodes, Redis through Sentinel ---------------------------------


def test_rabbitmq_url_lists_the_nodes_of_a_cluster_in_order() -> None:
    s = load(RABBITMQ_URL=" amqp://u:p@node-1:5672/vh , amqps://u:p@node-2:5671/vh,amqp://node-3/,")
    assert s.rabbitmq_urls == (
        "amqp://u:p@node-1:5672/vh",
        "amqps://u:p@node-2:5671/vh",
        "amqp://node-3/",
    )
    assert s.rabbitmq_url == "amqp://u:p@node-1:5672/vh"  # tools that talk to one node
    assert load().rabbitmq_urls == ("amqp://guest:guest@127.0.0.1:5672/",)
    assert load(RABBITMQ_URL="").rabbitmq_urls == load().rabbitmq_urls


def test_a_bad_node_is_named_by_position_and_never_echoed() -> None:
    # An unencoded comma in a password splits the URL; the pieces must not be shown.
    with pytest.raises(ConfigError) as info:
        load(RABBITMQ_URL="amqp://u:first,half@node-1/,amqp://node-2/")
    message = str(info.value)
    assert "RABBITMQ_URL" in message and "entry 1 of 3" in message and "%2C" in message
    assert "first" not in message and "half" not in message


def test_repr_masks_the_password_of_every_node() -> None:
    text = repr(load(RABBITMQ_URL="amqp://u:pw-one@node-1/,amqp://u:pw-two@node-2/"))
    assert "pw-one" not in text and "pw-two" not in text
    assert "node-1" in text and "node-2" in text


def test_redis_sentinels_and_master() -> None:
    s = load(
        REDIS_SENTINELS="sentinel-1:26380, sentinel-2 ,[::1]:26381",
        REDIS_SENTINEL_MASTER="orders",
        REDIS_URL="rediss://:pw@ignored:1/2",
    )
    assert s.redis_sentinels == (("sentinel-1", 26380), ("sentinel-2", 26379), ("::1", 26381))
    assert s.redis_sentinel_master == "orders"
    assert load().redis_sentinels == () and load().redis_sentinel_master == "mymaster"


def test_redis_cluster_nodes_and_the_fanout_chunk() -> None:
    s = load(REDIS_CLUSTER_NODES="redis-1:7000, redis-2", FANOUT_CHUNK_SIZE="250")
    assert s.redis_cluster_nodes == (("redis-1", 7000), ("redis-2", 6379))
    assert s.fanout_chunk_size == 250
    assert load().redis_cluster_nodes == () and load().fanout_chunk_size == 500
    with pytest.raises(ConfigError, match="REDIS_SENTINELS"):
        load(REDIS_CLUSTER_NODES="r1", REDIS_SENTINELS="s1")
    with pytest.raises(ConfigError, match="REDIS_WAIT_REPLICAS"):
        load(REDIS_CLUSTER_NODES="r1", REDIS_WAIT_REPLICAS="1")


def test_sentinels_need_a_tcp_redis_url() -> None:
    with pytest.raises(ConfigError, match="REDIS_URL"):
        load(REDIS_SENTINELS="s1", REDIS_URL="unix:///run/redis.sock")


# --- payload format (issue 14) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", "classic"), ("classic", "classic"), ("Declarative", "declarative")],
)
def test_payload_format(value: str, expected: str) -> None:
    assert load(PUSH_PAYLOAD_FORMAT=value).push_payload_format == expected


def test_bad_payload_format_fails_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="PUSH_PAYLOAD_FORMAT"):
        load(PUSH_PAYLOAD_FORMAT="webpush")
