"""The settings of the service itself, the broker queue, push delivery, retries, HTTP.

Each function reads one group of variables into `Settings` fields; `Settings.from_env`
merges them.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal, cast

from push_service.config.environment import Env
from push_service.errors import ConfigError

DEFAULT_ALLOWLIST = (
    "fcm.googleapis.com",
    "android.googleapis.com",
    "*.push.services.mozilla.com",
    "*.push.apple.com",
    "*.notify.windows.com",
)
URGENCIES = ("very-low", "low", "normal", "high")
# Delay queues of parked retries, in seconds: each step about three times the last.
DEFAULT_LADDER = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
# Delays between tries of one report to the User Service: the n-th retry waits the n-th
# step (the last one repeats). A User Service back after a deploy hears within seconds;
# one down for a day costs each report a few hundred tries, not thousands.
DEFAULT_REPORT_LADDER = (1.0, 5.0, 30.0, 120.0, 300.0)
REMOVED = {
    "PUSH_RETRY_MAX_SECONDS": "retries are bounded by the notification's deadline "
    "(PUSH_RETRY_WINDOW_SECONDS) and PUSH_RETRY_MAX_TRIES",
    "PUSH_RETRY_AFTER_CAP_SECONDS": "Retry-After is honoured up to the notification's deadline",
    "USER_SERVICE_MAX_SECONDS": "reports to the User Service are durable and retried for "
    "USER_SERVICE_REPORT_MAX_AGE_SECONDS",
}
# What the browser decrypts for messages that do not say (`payload_format`): the classic
# JSON or the W3C declarative push message (push_service.models.payload).
PayloadFormat = Literal["classic", "declarative"]
PAYLOAD_FORMATS: tuple[PayloadFormat, ...] = ("classic", "declarative")
_EXCHANGE_NAME = re.compile(r"[A-Za-z0-9_.:-]{0,255}")


def service_values(env: Env) -> dict[str, Any]:
    log_level = env.text("LOG_LEVEL", "INFO").upper() or "INFO"
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    return {
        "port": env.integer("PORT", 3004, 0, 65535),
        "host": env.text("HOST", "0.0.0.0") or "0.0.0.0",
        "node_env": env.choice("NODE_ENV", "development", ("development", "production")),
        "log_level": log_level,
        "enable_debug": env.flag("ENABLE_DEBUG", False),
        "shutdown_grace_seconds": env.number("SHUTDOWN_GRACE_SECONDS", 25.0),
        "status_ttl_seconds": env.integer("STATUS_TTL_SECONDS", 7 * 24 * 3600, 60),
        "vapid_public_key": env.text("VAPID_PUBLIC_KEY"),
        "vapid_private_key": env.text("VAPID_PRIVATE_KEY"),
        "vapid_email": env.text("VAPID_EMAIL"),
        "vapid_key_file": env.text("VAPID_KEY_FILE", ".vapid-dev-key.pem"),
        "vapid_keys": _vapid_keys(env, "VAPID_KEYS"),
        "vapid_current_key_id": _key_id(env, "VAPID_CURRENT_KEY_ID"),
    }


_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def _key_id(env: Env, name: str) -> str:
    value = env.text(name)
    if value and not _KEY_ID.fullmatch(value):
        raise ConfigError(f"{name} must be 1 to 32 letters, digits and _.-, got {value!r}")
    return value


def _vapid_keys(env: Env, name: str) -> tuple[tuple[str, str], ...]:
    """`id=private,id=private`; the keys themselves are checked when they are loaded."""
    pairs: dict[str, str] = {}
    for number, item in enumerate(env.items(name, ()), 1):
        key_id, sep, value = item.partition("=")
        key_id = key_id.strip()
        # Name the position or the id, never the value: it is a private key.
        if not sep or not value.strip():
            raise ConfigError(f"{name}: entry {number} is not id=private_key")
        if not _KEY_ID.fullmatch(key_id):
            raise ConfigError(
                f"{name}: entry {number}: a key id is 1 to 32 letters, digits and _.-"
            )
        if key_id in pairs:
            raise ConfigError(f"{name}: key id {key_id!r} is given twice")
        pairs[key_id] = value.strip()
    return tuple(pairs.items())


def broker_values(env: Env) -> dict[str, Any]:
    queue = env.text("RABBITMQ_QUEUE_NAME", "push.queue") or "push.queue"
    if len(queue) > 200:
        raise ConfigError("RABBITMQ_QUEUE_NAME must be at most 200 characters")
    return {
        "events_exchange": _exchange(env, "EVENTS_EXCHANGE", "push.events"),
        "rabbitmq_queue_name": queue,
        "rabbitmq_queue_type": env.choice("RABBITMQ_QUEUE_TYPE", "classic", ("classic", "quorum")),
        "consumer_prefetch": env.integer("CONSUMER_PREFETCH", 256, 1, 65535),
        "max_delivery_attempts": env.integer("MAX_DELIVERY_ATTEMPTS", 5, 1, 1000),
        "publish_timeout_seconds": env.number("PUBLISH_TIMEOUT_SECONDS", 5.0, 0.1),
        "redis_url": env.url("REDIS_URL", "redis://127.0.0.1:6379/0", ("redis", "rediss", "unix")),
        "redis_key_prefix": env.text("REDIS_KEY_PREFIX", "push:"),
        "user_service_url": str(env.url("USER_SERVICE_URL", "", ("http", "https"))).rstrip("/"),
        "user_service_deactivate_path": env.text(
            "USER_SERVICE_DEACTIVATE_PATH", "/api/v1/push-subscriptions/deactivate"
        ),
        "user_service_timeout_seconds": env.number("USER_SERVICE_TIMEOUT_SECONDS", 5.0, 0.1),
        "user_service_register_path": env.text(
            "USER_SERVICE_REGISTER_PATH", "/api/v1/push-subscriptions"
        ),
        "user_service_report_max_age_seconds": env.number(
            "USER_SERVICE_REPORT_MAX_AGE_SECONDS", 86400.0, 1.0
        ),
        "user_service_report_retry_seconds": _ladder(
            env, "USER_SERVICE_REPORT_RETRY_SECONDS", DEFAULT_REPORT_LADDER
        ),
        "user_service_report_concurrency": env.integer(
            "USER_SERVICE_REPORT_CONCURRENCY", 16, 1, 1000
        ),
    }


def _exchange(env: Env, name: str, default: str) -> str:
    """An AMQP exchange name; empty turns the feature off."""
    value = env.text(name, default)
    if not _EXCHANGE_NAME.fullmatch(value) or value.startswith("amq."):
        raise ConfigError(
            f"{name} must be empty or up to 255 letters, digits and -_.: (not amq.*), got {value!r}"
        )
    return value


def push_values(env: Env) -> dict[str, Any]:
    return {
        "push_endpoint_allowlist": env.items("PUSH_ENDPOINT_ALLOWLIST", DEFAULT_ALLOWLIST),
        "push_allow_http": env.flag("PUSH_ALLOW_HTTP", False),
        "push_default_ttl_seconds": env.integer("PUSH_DEFAULT_TTL_SECONDS", 24 * 3600, 0, 2**31),
        "push_timeout_seconds": env.number("PUSH_TIMEOUT_SECONDS", 10.0, 0.1),
        "push_concurrency": env.integer("PUSH_CONCURRENCY", 256, 1, 100_000),
        "max_message_bytes": env.integer("MAX_MESSAGE_BYTES", 8 * 1024 * 1024, 1024),
        "max_devices_per_message": env.integer("MAX_DEVICES_PER_MESSAGE", 10_000, 1),
        "fanout_chunk_size": env.integer("FANOUT_CHUNK_SIZE", 500, 1, 1000),
    }


def retry_values(env: Env) -> dict[str, Any]:
    return {
        "push_retry_max_tries": env.integer("PUSH_RETRY_MAX_TRIES", 10, 1, 1000),
        "push_retry_in_process_seconds": env.number("PUSH_RETRY_IN_PROCESS_SECONDS", 5.0),
        "push_retry_base_delay_seconds": env.number("PUSH_RETRY_BASE_DELAY_SECONDS", 0.5, 0.001),
        "push_retry_max_delay_seconds": env.number("PUSH_RETRY_MAX_DELAY_SECONDS", 600.0, 0.001),
        "push_retry_window_seconds": env.number("PUSH_RETRY_WINDOW_SECONDS", 24 * 3600.0, 1.0),
        "push_retry_ladder_seconds": _ladder(env, "PUSH_RETRY_LADDER_SECONDS", DEFAULT_LADDER),
        "push_origin_concurrency": env.integer("PUSH_ORIGIN_CONCURRENCY", 64, 1, 100_000),
        "push_circuit_failures": env.integer("PUSH_CIRCUIT_FAILURES", 5, 1, 1000),
        "push_circuit_stall_seconds": env.number("PUSH_CIRCUIT_STALL_SECONDS", 5.0, 0.05),
        "push_circuit_open_seconds": env.number("PUSH_CIRCUIT_OPEN_SECONDS", 5.0, 0.05),
        "push_circuit_max_open_seconds": env.number("PUSH_CIRCUIT_MAX_OPEN_SECONDS", 15.0, 0.05),
    }


def _ladder(env: Env, name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    """Delay steps in seconds: 10 ms to 24 days (RabbitMQ's message TTL is 32-bit ms)."""
    raw = env.items(name, ())
    if not raw:
        return default
    try:
        steps = sorted({float(item) for item in raw})
    except ValueError:
        raise ConfigError(f"{name} must list numbers of seconds, got {','.join(raw)!r}") from None
    if not all(0.01 <= step <= 2_000_000 for step in steps):
        raise ConfigError(f"{name} steps must be from 0.01 to 2000000 seconds")
    return tuple(steps)


def removed(env: Env) -> tuple[str, ...]:
    return tuple(
        f"{name} is no longer used: {why}" for name, why in REMOVED.items() if env.text(name)
    )


def _networks(env: Env, name: str) -> tuple[str, ...]:
    values = env.items(name, ())
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ConfigError(f"{name} must list IP addresses or networks, got {value!r}") from None
    return values


def http_values(env: Env) -> dict[str, Any]:
    return {
        "max_request_bytes": env.integer("MAX_REQUEST_BYTES", 16 * 1024, 1024),
        "cors_allow_origins": env.items("CORS_ALLOW_ORIGINS", ()),
        "subscribe_rate_limit": env.integer("SUBSCRIBE_RATE_LIMIT", 30, 0),
        "subscribe_rate_window_seconds": env.number("SUBSCRIBE_RATE_WINDOW_SECONDS", 60.0, 0.1),
        "trusted_proxies": _networks(env, "TRUSTED_PROXIES"),
        "welcome_title": env.text("WELCOME_TITLE", "Notifications enabled"),
        "welcome_body": env.text("WELCOME_BODY", "You will now receive push notifications."),
        "welcome_action_url": env.text("WELCOME_ACTION_URL", "/web_push_test/web_push_test.html"),
    }


def observability_values(env: Env) -> dict[str, Any]:
    interval = env.number("QUEUE_DEPTH_INTERVAL_SECONDS", 15.0)
    if 0 < interval < 1:
        raise ConfigError("QUEUE_DEPTH_INTERVAL_SECONDS must be 0 (off) or at least 1")
    return {"queue_depth_interval_seconds": interval}


def payload_values(env: Env) -> dict[str, Any]:
    chosen = env.choice("PUSH_PAYLOAD_FORMAT", "classic", PAYLOAD_FORMATS)
    return {"push_payload_format": cast(PayloadFormat, chosen)}
