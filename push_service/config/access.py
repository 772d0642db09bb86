"""Settings of who may call what, and where the broker and Redis nodes are.

Peer tokens and the subscriber JWT keys are secrets: errors name their position or
variable, never the value. Broker URLs may carry passwords: errors mask them.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from push_service.config.environment import Env, redact_url, scheme
from push_service.errors import ConfigError

DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_SENTINEL_PORT = 26379

# RFC 6750 b64token: what may follow "Bearer " in an Authorization header.
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/-]+=*\Z")
MIN_TOKEN_LENGTH = 16
MIN_JWT_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash


def _api_tokens(env: Env) -> tuple[str, ...]:
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


def api_values(env: Env) -> dict[str, Any]:
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


def _subscribe_jwt_values(env: Env) -> dict[str, Any]:
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


def cluster_values(env: Env) -> dict[str, Any]:
    sentinels = _sentinels(env)
    nodes = _cluster_nodes(env)
    if nodes and sentinels:
        raise ConfigError("REDIS_CLUSTER_NODES and REDIS_SENTINELS exclude each other")
    if nodes and env.integer("REDIS_WAIT_REPLICAS", 0, 0, 16):
        raise ConfigError("REDIS_WAIT_REPLICAS is not supported with REDIS_CLUSTER_NODES")
    if sentinels and scheme(env.text("REDIS_URL")) not in ("", "redis", "rediss"):
        raise ConfigError(
            "REDIS_URL must be a redis:// or rediss:// URL when REDIS_SENTINELS is set"
        )
    return {
        "rabbitmq_urls": _amqp_urls(env),
        "redis_sentinels": sentinels,
        "redis_cluster_nodes": nodes,
        "redis_sentinel_master": env.text("REDIS_SENTINEL_MASTER", "mymaster") or "mymaster",
        "redis_wait_replicas": env.integer("REDIS_WAIT_REPLICAS", 0, 0, 16),
        "redis_wait_timeout_seconds": _wait_timeout(env),
    }


def _wait_timeout(env: Env) -> float:
    # Below the 5 s that one Redis round trip may take, WAIT included.
    timeout = env.number("REDIS_WAIT_TIMEOUT_SECONDS", 1.0, 0.001)
    if timeout > 4.0:
        raise ConfigError(f"REDIS_WAIT_TIMEOUT_SECONDS must be at most 4, got {timeout}")
    return timeout


def _amqp_urls(env: Env) -> tuple[str, ...]:
    """RABBITMQ_URL: one AMQP URL, or several separated by commas (nodes of one cluster)."""
    urls = env.items("RABBITMQ_URL", ()) or (DEFAULT_RABBITMQ_URL,)
    for number, url in enumerate(urls, 1):
        if scheme(url) in ("amqp", "amqps"):
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


def _sentinels(env: Env) -> tuple[tuple[str, int], ...]:
    """REDIS_SENTINELS: comma-separated host:port (port 26379 when left out; [v6]:port)."""
    sentinels = []
    for item in env.items("REDIS_SENTINELS", ()):
        host, port = _host_port(item)
        if not host or not 0 < port < 65536:
            raise ConfigError(f"REDIS_SENTINELS must list host:port entries, got {item!r}")
        sentinels.append((host, port))
    return tuple(sentinels)


def _cluster_nodes(env: Env) -> tuple[tuple[str, int], ...]:
    """REDIS_CLUSTER_NODES: comma-separated host:port of some nodes of a Redis Cluster."""
    nodes = []
    for item in env.items("REDIS_CLUSTER_NODES", ()):
        host, port = _host_port(item, 6379)
        if not host or not 0 < port < 65536:
            raise ConfigError(f"REDIS_CLUSTER_NODES must list host:port entries, got {item!r}")
        nodes.append((host, port))
    return tuple(nodes)


def _host_port(item: str, default_port: int = DEFAULT_SENTINEL_PORT) -> tuple[str, int]:
    """`host[:port]` split; ("", 0) when it is something else."""
    try:
        parts = urlsplit(f"//{item}")
        port = parts.port
    except ValueError:
        return "", 0
    if parts.username is not None or parts.path or parts.query or parts.fragment:
        return "", 0
    return parts.hostname or "", default_port if port is None else port
