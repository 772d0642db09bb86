"""Settings, read once at start-up from the environment and an optional `.env` file.

Nothing else in the package reads `os.environ`: every part receives the frozen
`Settings` (or the few values it needs) from the app module.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

from push_service.errors import ConfigError

T = TypeVar("T")

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
REMOVED = {
    "PUSH_RETRY_MAX_SECONDS": "retries are bounded by the notification's deadline "
    "(PUSH_RETRY_WINDOW_SECONDS) and PUSH_RETRY_MAX_TRIES",
    "PUSH_RETRY_AFTER_CAP_SECONDS": "Retry-After is honoured up to the notification's deadline",
}
_INLINE_COMMENT = re.compile(r"\s+#")
_QUOTED_WITH_COMMENT = re.compile(r"^(['\"])(.*?)\1\s+#.*$", re.DOTALL)
_QUOTED = re.compile(r"^(['\"])(.*)\1$", re.DOTALL)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_SECRET_FIELDS = {"vapid_private_key", "api_tokens", "subscribe_jwt_secret"}
_URL_FIELDS = {"rabbitmq_urls", "redis_url", "user_service_url"}
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_SENTINEL_PORT = 26379


def redact_url(url: str) -> str:
    """Mask the password (and user name) of a URL so it can be logged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]  # keeps IPv6 brackets and the port as written
    return urlunsplit((parts.scheme, f"***:***@{host}", parts.path, parts.query, ""))


def _scheme(url: str) -> str:
    """The scheme of a URL that parses (port included), else "": fail at start-up, not later."""
    try:
        port = urlsplit(url).port
    except ValueError:
        return ""
    return "" if port == 0 else urlsplit(url).scheme


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a `.env` file: KEY=VALUE lines, `#` comments, optional quotes."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE")
        value = value.strip()
        quoted = _QUOTED_WITH_COMMENT.match(value) or _QUOTED.match(value)
        if quoted:  # a quoted value may be followed by a comment: VAR="x"  # note
            value = quoted.group(2)
        else:
            # Unquoted values may carry a trailing comment, as in .env.example.
            value = "" if value.startswith("#") else _INLINE_COMMENT.split(value, maxsplit=1)[0]
        values[key.strip()] = value.replace("\\n", "\n")
    return values


class _Env:
    """Typed reads from a mapping; every error names the variable."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values

    def text(self, name: str, default: str = "") -> str:
        return self.values.get(name, default).strip()

    def _cast(self, name: str, default: T, cast: Callable[[str], T], kind: str) -> T:
        raw = self.text(name)
        if raw == "":
            return default
        try:
            return cast(raw)
        except ValueError:
            raise ConfigError(f"{name} must be {kind}, got {raw!r}") from None

    def integer(self, name: str, default: int, minimum: int = 0, maximum: int = 2**31) -> int:
        value = self._cast(name, default, int, "an integer")
        if not minimum <= value <= maximum:
            raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
        return value

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        value = self._cast(name, default, float, "a number")
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value}")
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.text(name).lower()
        if raw == "":
            return default
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")

    def items(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        if name not in self.values:
            return default
        return tuple(item.strip() for item in self.values[name].split(",") if item.strip())

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default).lower() or default
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def url(self, name: str, default: str, schemes: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value and _scheme(value) not in schemes:
            shown = redact_url(value)
            raise ConfigError(f"{name} must be a valid {'/'.join(schemes)} URL, got {shown!r}")
        return value


@dataclass(frozen=True, repr=False)
class Settings:
    port: int = 3004
    host: str = "0.0.0.0"
    node_env: str = "development"
    log_level: str = "INFO"
    enable_debug: bool = False
    rabbitmq_urls: tuple[str, ...] = (DEFAULT_RABBITMQ_URL,)
    rabbitmq_queue_name: str = "push.queue"
    rabbitmq_queue_type: str = "classic"
    consumer_prefetch: int = 256
    max_delivery_attempts: int = 5
    publish_timeout_seconds: float = 5.0
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_key_prefix: str = "push:"
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = "mymaster"
    redis_wait_replicas: int = 0
    redis_wait_timeout_seconds: float = 1.0
    status_ttl_seconds: int = 7 * 24 * 3600
    user_service_url: str = ""
    user_service_deactivate_path: str = "/api/v1/push-subscriptions/deactivate"
    user_service_timeout_seconds: float = 5.0
    user_service_max_seconds: float = 30.0
    vapid_public_key: str = ""
    vapid_private_key: str = ""
    vapid_email: str = ""
    vapid_key_file: str = ".vapid-dev-key.pem"
    push_endpoint_allowlist: tuple[str, ...] = DEFAULT_ALLOWLIST
    push_allow_http: bool = False
    push_default_ttl_seconds: int = 24 * 3600
    push_timeout_seconds: float = 10.0
    push_concurrency: int = 256
    push_retry_max_tries: int = 10
    push_retry_in_process_seconds: float = 5.0
    push_retry_base_delay_seconds: float = 0.5
    push_retry_max_delay_seconds: float = 600.0
    push_retry_window_seconds: float = 24 * 3600.0
    push_retry_ladder_seconds: tuple[float, ...] = DEFAULT_LADDER
    push_origin_concurrency: int = 64
    push_circuit_failures: int = 5
    push_circuit_stall_seconds: float = 5.0
    push_circuit_open_seconds: float = 5.0
    push_circuit_max_open_seconds: float = 60.0
    max_message_bytes: int = 8 * 1024 * 1024
    max_devices_per_message: int = 10_000
    max_request_bytes: int = 16 * 1024
    shutdown_grace_seconds: float = 25.0
    cors_allow_origins: tuple[str, ...] = ()
    subscribe_rate_limit: int = 30
    subscribe_rate_window_seconds: float = 60.0
    trusted_proxies: tuple[str, ...] = ()
    welcome_title: str = "Notifications enabled"
    welcome_body: str = "You will now receive push notifications."
    welcome_action_url: str = "/web_push_test/web_push_test.html"
    # --- the peer-service API and subscriber identity (_api_values) ---
    api_tokens: tuple[str, ...] = ()
    metrics_port: int = 0
    http_read_timeout_seconds: float = 10.0
    max_notification_request_bytes: int = 1024 * 1024
    subscribe_jwt_secret: str = ""
    subscribe_jwt_public_key: str = ""
    subscribe_jwt_jwks_file: str = ""
    subscribe_jwt_user_claim: str = "sub"
    subscribe_jwt_audience: tuple[str, ...] = ()
    subscribe_jwt_issuer: str = ""
    subscribe_jwt_required: bool = False
    # Start-up warnings about the configuration (e.g. a variable that no longer exists).
    warnings: tuple[str, ...] = ()
    # --- observability (issue 15) ---
    queue_depth_interval_seconds: float = 15.0
    # --- payload format (issue 14): see _payload_values ---
    push_payload_format: PayloadFormat = "classic"

    @property
    def production(self) -> bool:
        return self.node_env == "production"

    @property
    def rabbitmq_url(self) -> str:
        """The first broker node: for tools that talk to one node."""
        return self.rabbitmq_urls[0]

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.rabbitmq_queue_name}.dlq"

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and value:
                value = "***"
            elif f.name in _URL_FIELDS:
                value = (
                    tuple(map(redact_url, value)) if isinstance(value, tuple) else redact_url(value)
                )
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
    ) -> Settings:
        """Read settings: the environment wins over the optional `.env` file."""
        values: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            values.update(read_env_file(Path(env_file)))
        values.update(os.environ if environ is None else environ)
        return cls._from_values(_Env(values))

    @classmethod
    def _from_values(cls, env: _Env) -> Settings:
        return cls(
            **_service_values(env),
            **_broker_values(env),
            **_push_values(env),
            **_retry_values(env),
            **_http_values(env),
            **_api_values(env),
            **_cluster_values(env),
            **_observability_values(env),
            **_payload_values(env),
            warnings=_removed(env),
        )


def _service_values(env: _Env) -> dict[str, Any]:
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
    }


def _broker_values(env: _Env) -> dict[str, Any]:
    queue = env.text("RABBITMQ_QUEUE_NAME", "push.queue") or "push.queue"
    if len(queue) > 200:
        raise ConfigError("RABBITMQ_QUEUE_NAME must be at most 200 characters")
    return {
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
        "user_service_max_seconds": env.number("USER_SERVICE_MAX_SECONDS", 30.0, 0.1),
    }


def _push_values(env: _Env) -> dict[str, Any]:
    return {
        "push_endpoint_allowlist": env.items("PUSH_ENDPOINT_ALLOWLIST", DEFAULT_ALLOWLIST),
        "push_allow_http": env.flag("PUSH_ALLOW_HTTP", False),
        "push_default_ttl_seconds": env.integer("PUSH_DEFAULT_TTL_SECONDS", 24 * 3600, 0, 2**31),
        "push_timeout_seconds": env.number("PUSH_TIMEOUT_SECONDS", 10.0, 0.1),
        "push_concurrency": env.integer("PUSH_CONCURRENCY", 256, 1, 100_000),
        "max_message_bytes": env.integer("MAX_MESSAGE_BYTES", 8 * 1024 * 1024, 1024),
        "max_devices_per_message": env.integer("MAX_DEVICES_PER_MESSAGE", 10_000, 1),
    }


def _retry_values(env: _Env) -> dict[str, Any]:
    return {
        "push_retry_max_tries": env.integer("PUSH_RETRY_MAX_TRIES", 10, 1, 1000),
        "push_retry_in_process_seconds": env.number("PUSH_RETRY_IN_PROCESS_SECONDS", 5.0),
        "push_retry_base_delay_seconds": env.number("PUSH_RETRY_BASE_DELAY_SECONDS", 0.5, 0.001),
        "push_retry_max_delay_seconds": env.number("PUSH_RETRY_MAX_DELAY_SECONDS", 600.0, 0.001),
        "push_retry_window_seconds": env.number("PUSH_RETRY_WINDOW_SECONDS", 24 * 3600.0, 1.0),
        "push_retry_ladder_seconds": _ladder(env, "PUSH_RETRY_LADDER_SECONDS"),
        "push_origin_concurrency": env.integer("PUSH_ORIGIN_CONCURRENCY", 64, 1, 100_000),
        "push_circuit_failures": env.integer("PUSH_CIRCUIT_FAILURES", 5, 1, 1000),
        "push_circuit_stall_seconds": env.number("PUSH_CIRCUIT_STALL_SECONDS", 5.0, 0.05),
        "push_circuit_open_seconds": env.number("PUSH_CIRCUIT_OPEN_SECONDS", 5.0, 0.05),
        "push_circuit_max_open_seconds": env.number("PUSH_CIRCUIT_MAX_OPEN_SECONDS", 60.0, 0.05),
    }


def _ladder(env: _Env, name: str) -> tuple[float, ...]:
    """Delay steps in seconds: 10 ms to 24 days (RabbitMQ's message TTL is 32-bit ms)."""
    raw = env.items(name, ())
    if not raw:
        return DEFAULT_LADDER
    try:
        steps = sorted({float(item) for item in raw})
    except ValueError:
        raise ConfigError(f"{name} must list numbers of seconds, got {','.join(raw)!r}") from None
    if not all(0.01 <= step <= 2_000_000 for step in steps):
        raise ConfigError(f"{name} steps must be from 0.01 to 2000000 seconds")
    return tuple(steps)


def _removed(env: _Env) -> tuple[str, ...]:
    return tuple(
        f"{name} is no longer used: {why}" for name, why in REMOVED.items() if env.text(name)
    )


def _networks(env: _Env, name: str) -> tuple[str, ...]:
    values = env.items(name, ())
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ConfigError(f"{name} must list IP addresses or networks, got {value!r}") from None
    return values


def _http_values(env: _Env) -> dict[str, Any]:
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


# --- the peer-service API and subscriber identity -----------------------------------------

# RFC 6750 b64token: what may follow "Bearer " in an Authorization header.
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/-]+=*\Z")
MIN_TOKEN_LENGTH = 16
MIN_JWT_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash


def _api_tokens(env: _Env) -> tuple[str, ...]:
    tokens = env.items("API_TOKENS", ())
    for number, token in enumerate(tokens, 1):
        # The message names the position, never the value: a token must not reach a log.
        if not _TOKEN.match(token):
            raise ConfigError(f"API_TOKENS: token {number} has characters a bearer token cannot")
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"API_TOKENS: token {number} is shorter than {MIN_TOKEN_LENGTH} characters"
            )
    return tokens


def _api_values(env: _Env) -> dict[str, Any]:
    port = env.integer("PORT", 3004, 0, 65535)
    metrics_port = env.integer("METRICS_PORT", 0, 0, 65535)
    if metrics_port and metrics_port == port:
        raise ConfigError(f"METRICS_PORT must differ from PORT, both are {port}")
    return {
        "api_tokens": _api_tokens(env),
        "metrics_port": metrics_port,
        "http_read_timeout_seconds": env.number("HTTP_READ_TIMEOUT_SECONDS", 10.0, 0.1),
        "max_notification_request_bytes": env.integer(
            "MAX_NOTIFICATION_REQUEST_BYTES", 1024 * 1024, 1024
        ),
        **_subscribe_jwt_values(env),
    }


def _subscribe_jwt_values(env: _Env) -> dict[str, Any]:
    secret = env.text("SUBSCRIBE_JWT_SECRET")
    public_key = env.text("SUBSCRIBE_JWT_PUBLIC_KEY")
    jwks_file = env.text("SUBSCRIBE_JWT_JWKS_FILE")
    keys = [
        name
        for name, value in (
            ("SUBSCRIBE_JWT_SECRET", secret),
            ("SUBSCRIBE_JWT_PUBLIC_KEY", public_key),
            ("SUBSCRIBE_JWT_JWKS_FILE", jwks_file),
        )
        if value
    ]
    if len(keys) > 1:
        raise ConfigError(f"set only one of {', '.join(keys)}")
    if secret and len(secret.encode()) < MIN_JWT_SECRET_BYTES:
        raise ConfigError(f"SUBSCRIBE_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes")
    values = {
        "subscribe_jwt_secret": secret,
        "subscribe_jwt_public_key": public_key,
        "subscribe_jwt_jwks_file": jwks_file,
        "subscribe_jwt_user_claim": env.text("SUBSCRIBE_JWT_USER_CLAIM", "sub") or "sub",
        "subscribe_jwt_audience": env.items("SUBSCRIBE_JWT_AUDIENCE", ()),
        "subscribe_jwt_issuer": env.text("SUBSCRIBE_JWT_ISSUER"),
        "subscribe_jwt_required": env.flag("SUBSCRIBE_JWT_REQUIRED", False),
    }
    dependent = [
        name
        for name, given in (
            ("SUBSCRIBE_JWT_AUDIENCE", values["subscribe_jwt_audience"]),
            ("SUBSCRIBE_JWT_ISSUER", values["subscribe_jwt_issuer"]),
            ("SUBSCRIBE_JWT_REQUIRED", values["subscribe_jwt_required"]),
        )
        if given
    ]
    if dependent and not keys:
        raise ConfigError(
            f"{dependent[0]} needs a key: SUBSCRIBE_JWT_SECRET, SUBSCRIBE_JWT_PUBLIC_KEY "
            "or SUBSCRIBE_JWT_JWKS_FILE"
        )
    return values


# --- clusters: several broker nodes, Redis through Sentinel ------------------------------


def _cluster_values(env: _Env) -> dict[str, Any]:
    sentinels = _sentinels(env)
    if sentinels and _scheme(env.text("REDIS_URL")) not in ("", "redis", "rediss"):
        raise ConfigError(
            "REDIS_URL must be a redis:// or rediss:// URL when REDIS_SENTINELS is set"
        )
    return {
        "rabbitmq_urls": _amqp_urls(env),
        "redis_sentinels": sentinels,
        "redis_sentinel_master": env.text("REDIS_SENTINEL_MASTER", "mymaster") or "mymaster",
        "redis_wait_replicas": env.integer("REDIS_WAIT_REPLICAS", 0, 0, 16),
        "redis_wait_timeout_seconds": _wait_timeout(env),
    }


def _wait_timeout(env: _Env) -> float:
    # Below the 5 s that one Redis round trip may take, WAIT included.
    timeout = env.number("REDIS_WAIT_TIMEOUT_SECONDS", 1.0, 0.001)
    if timeout > 4.0:
        raise ConfigError(f"REDIS_WAIT_TIMEOUT_SECONDS must be at most 4, got {timeout}")
    return timeout


def _amqp_urls(env: _Env) -> tuple[str, ...]:
    """RABBITMQ_URL: one AMQP URL, or several separated by commas (nodes of one cluster)."""
    urls = env.items("RABBITMQ_URL", ()) or (DEFAULT_RABBITMQ_URL,)
    for number, url in enumerate(urls, 1):
        if _scheme(url) in ("amqp", "amqps"):
            continue
        if len(urls) == 1:
            raise ConfigError(
                f"RABBITMQ_URL must be a valid amqp/amqps URL, got {redact_url(url)!r}"
            )
        # Not echoed: a password with an unencoded comma is split across entries.
        raise ConfigError(
            f"RABBITMQ_URL entry {number} of {len(urls)} is not a valid amqp/amqps URL"
            " (write a comma inside a password as %2C)"
        )
    return urls


def _sentinels(env: _Env) -> tuple[tuple[str, int], ...]:
    """REDIS_SENTINELS: comma-separated host:port (port 26379 when left out; [v6]:port)."""
    sentinels = []
    for item in env.items("REDIS_SENTINELS", ()):
        host, port = _host_port(item)
        if not host or not 0 < port < 65536:
            raise ConfigError(f"REDIS_SENTINELS must list host:port entries, got {item!r}")
        sentinels.append((host, port))
    return tuple(sentinels)


def _host_port(item: str) -> tuple[str, int]:
    """`host[:port]` split; ("", 0) when it is something else."""
    try:
        parts = urlsplit(f"//{item}")
        port = parts.port
    except ValueError:
        return "", 0
    if parts.username is not None or parts.path or parts.query or parts.fragment:
        return "", 0
    return parts.hostname or "", DEFAULT_SENTINEL_PORT if port is None else port


# --- observability (issue 15) -----------------------------------------------------------


def _observability_values(env: _Env) -> dict[str, Any]:
    interval = env.number("QUEUE_DEPTH_INTERVAL_SECONDS", 15.0)
    if 0 < interval < 1:
        raise ConfigError("QUEUE_DEPTH_INTERVAL_SECONDS must be 0 (off) or at least 1")
    return {"queue_depth_interval_seconds": interval}


# --- payload format (issue 14) ----------------------------------------------------------
# What the browser decrypts for messages that do not say (`payload_format`): the classic
# JSON or the W3C declarative push message (push_service.models.payload).
PayloadFormat = Literal["classic", "declarative"]
PAYLOAD_FORMATS: tuple[PayloadFormat, ...] = ("classic", "declarative")


def _payload_values(env: _Env) -> dict[str, Any]:
    chosen = env.choice("PUSH_PAYLOAD_FORMAT", "classic", PAYLOAD_FORMATS)
    return {"push_payload_format": cast(PayloadFormat, chosen)}
