"""Scheduled sends and receipts (issue 24): SCHEDULE_*, RECEIPTS_*, PUBLIC_BASE_URL."""

from __future__ import annotations

from typing import Any

from push_service.config.environment import Env
from push_service.errors import ConfigError

MIN_RECEIPTS_SECRET_BYTES = 32


def feature_values(env: Env) -> dict[str, Any]:
    """Without RECEIPTS_SECRET the key is derived from the current VAPID key (`receipts`),
    which every replica shares: never a secret made up per process, which would turn the
    other replicas' receipts into forgeries."""
    enabled = env.flag("RECEIPTS_ENABLED", True)
    secret = env.text("RECEIPTS_SECRET")
    if secret and len(secret.encode()) < MIN_RECEIPTS_SECRET_BYTES:
        raise ConfigError(f"RECEIPTS_SECRET must be at least {MIN_RECEIPTS_SECRET_BYTES} bytes")
    base = env.text("PUBLIC_BASE_URL").rstrip("/")
    if base and not base.startswith(("https://", "http://")):
        raise ConfigError(f"PUBLIC_BASE_URL must be an http(s) URL, got {base!r}")
    return {
        "schedule_max_days": env.number("SCHEDULE_MAX_DAYS", 30.0, 0.001),
        "receipts_enabled": enabled,
        "receipts_secret": secret,
        "public_base_url": base,
    }
