"""Process entry point: settings, logging, signals, and hypercorn serving the app."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import signal
import sys
from typing import NoReturn
from urllib.parse import urlsplit

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from push_service.app import create_app
from push_service.config import Settings
from push_service.errors import ConfigError
from push_service.logs import configure_logging
from push_service.vapid_keys import VapidKeys, load_vapid_keys

GC_THRESHOLD = 20_000
log = logging.getLogger(__name__)


def secret_values(settings: Settings) -> list[str]:
    """Strings from the configuration that must never reach a log line."""
    values = [settings.vapid_private_key, settings.subscribe_jwt_secret, *settings.api_tokens]
    values += [private for _, private in settings.vapid_keys]
    for url in (*settings.rabbitmq_urls, settings.redis_url, settings.user_service_url):
        password = urlsplit(url).password if url else None
        if password:
            values.append(password)
    return [v for v in values if v]


KEEP_ALIVE_SECONDS = 75  # longer than the usual load balancer idle timeout (60 s)


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    if settings.metrics_port:
        # Same app; push_service.api.metrics answers only /metrics on this socket.
        config.bind.append(f"{settings.host}:{settings.metrics_port}")
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    # The lifespan shutdown drains the consumer: give it the whole grace period.
    config.shutdown_timeout = settings.shutdown_grace_seconds + 20
    config.graceful_timeout = min(5.0, settings.shutdown_grace_seconds)
    config.keep_alive_timeout = KEEP_ALIVE_SECONDS
    # hypercorn's read_timeout bounds every socket read, an idle keep-alive connection's
    # too, so it cannot be the body timeout (a load balancer would find its pooled
    # connections closed). The body limit middleware bounds each body to
    # HTTP_READ_TIMEOUT_SECONDS; this only ends connections that nothing else would.
    config.read_timeout = KEEP_ALIVE_SECONDS + math.ceil(settings.http_read_timeout_seconds)
    return config


async def serve(settings: Settings, keys: VapidKeys) -> None:
    """Serve until SIGTERM/SIGINT; a second signal forces an immediate exit."""
    shutdown = asyncio.Event()

    def on_signal(signum: int) -> None:
        if shutdown.is_set():
            log.error("second %s: exiting without waiting", signal.Signals(signum).name)
            os._exit(1)
        log.info("%s: shutting down gracefully", signal.Signals(signum).name)
        shutdown.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    app = create_app(settings, keys)
    log.info(
        "push_service listening on %s:%s (%s)", settings.host, settings.port, settings.node_env
    )
    if settings.metrics_port:
        log.info("metrics (no token) on %s:%s/metrics", settings.host, settings.metrics_port)
    await hypercorn_serve(
        app,  # type: ignore[arg-type]  # hypercorn's ASGI types are narrower than Starlette's
        hypercorn_config(settings),
        shutdown_trigger=shutdown.wait,
    )
    log.info("push_service stopped")


def _event_loop_factory() -> type[asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is absent on some platforms
        return None
    return uvloop.Loop


def main() -> None:
    """Console script `push-service` and `python -m push_service`."""
    try:
        settings = Settings.from_env()
        # Logging first, so that key loading (a generated dev key) logs as JSON too.
        formatter = configure_logging(
            settings.log_level, settings.enable_debug, secret_values(settings)
        )
        for warning in settings.warnings:
            log.warning("%s", warning)
        keys = load_vapid_keys(settings)  # the keys, and VAPID_EMAIL checked as Apple needs
    except ConfigError as exc:
        _config_error(exc)
    formatter.secrets.extend(keys.secrets())
    _tune_gc()
    try:
        with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
            runner.run(serve(settings, keys))
    except ConfigError as exc:  # a setting only the app can check (a JWT key file, ...)
        _config_error(exc)


def _tune_gc() -> None:
    """Fewer, cheaper collections: every push allocates hundreds of short-lived objects,
    and with the default threshold (700) the collector ran every few pushes, each time
    walking the modules and settings loaded at start-up. Those are frozen out of its
    view, and the youngest generation collects after 20,000 allocations, not 700."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, middle, old)


def _config_error(exc: ConfigError) -> NoReturn:
    print(f"push_service: configuration error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
