"""Configuration: read once into a frozen `Settings`; a bad value fails naming the variable."""

from push_service.config.environment import read_env_file, redact_url
from push_service.config.sections import (
    DEFAULT_ALLOWLIST,
    DEFAULT_LADDER,
    PAYLOAD_FORMATS,
    REMOVED,
    URGENCIES,
    PayloadFormat,
)
from push_service.config.settings import Settings

__all__ = [
    "DEFAULT_ALLOWLIST",
    "DEFAULT_LADDER",
    "PAYLOAD_FORMATS",
    "REMOVED",
    "URGENCIES",
    "PayloadFormat",
    "Settings",
    "read_env_file",
    "redact_url",
]
