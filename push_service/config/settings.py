"""Settings, read once at start-up from the environment and an optional `.env` file.

Nothing else in the package reads `os.environ`: every part receives the frozen
`Settings` (or the few values it needs) from the app module.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from push_service.config import access, features, sections
from push_service.config.access import DEFAULT_RABBITMQ_URL
from push_service.config.environment import Env, read_env_file, redact_url
from push_service.config.sections import (
    DEFAULT_ALLOWLIST,
    DEFAULT_LADDER,
    DEFAULT_REPORT_LADDER,
    PayloadFormat,
)

_SECRET_FIELDS = {
    "vapid_private_key",
    "vapid_keys",
    "api_tokens",
    "subscribe_jwt_secret",
    "receipts_secret",
}
_URL_FIELDS = {"rabbitmq_urls", "redis_url", "user_service_url"}


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
    events_exchange: str = "push.events"  # durable topic exchange of events; "" turns them off
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_key_prefix: str = "push:"
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = "mymaster"
    redis_wait_replicas: int = 0
    redis_cluster_nodes: tuple[tuple[str, int], ...] = ()
    redis_wait_timeout_seconds: float = 1.0
    status_ttl_seconds: int = 7 * 24 * 3600
    user_service_url: str = ""
    user_service_deactivate_path: str = "/api/v1/push-subscriptions/deactivate"
    user_service_timeout_seconds: float = 5.0
    user_service_register_path: str = "/api/v1/push-subscriptions"
    user_service_report_max_age_seconds: float = 86400.0
    user_service_report_retry_seconds: tuple[float, ...] = DEFAULT_REPORT_LADDER
    user_service_report_concurrency: int = 16
    vapid_public_key: str = ""
    vapid_private_key: str = ""
    vapid_email: str = ""
    vapid_key_file: str = ".vapid-dev-key.pem"
    vapid_keys: tuple[tuple[str, str], ...] = ()  # (id, private key): VAPID_KEYS
    vapid_current_key_id: str = ""  # "": the only key (VAPID_PRIVATE_KEY is id "default")
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
    push_circuit_max_open_seconds: float = 15.0
    max_message_bytes: int = 8 * 1024 * 1024
    max_devices_per_message: int = 10_000
    fanout_chunk_size: int = 500
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
    # --- scheduled sends and receipts (issue 24): see features.py ---
    schedule_max_days: float = 30.0
    receipts_enabled: bool = True
    receipts_secret: str = ""  # "" outside production: derived from the VAPID key
    public_base_url: str = ""  # "": receipt URLs are relative to the page's origin

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
        env = Env(values)
        return cls(
            **sections.service_values(env),
            **sections.broker_values(env),
            **sections.push_values(env),
            **sections.retry_values(env),
            **sections.http_values(env),
            **access.api_values(env),
            **access.cluster_values(env),
            **sections.observability_values(env),
            **sections.payload_values(env),
            **features.feature_values(env),
            warnings=sections.removed(env),
        )
