"""The ASGI app: the API over a `Runtime`, whose start and stop the lifespan owns."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from push_service.api import ApiServices, http_error, routes, server_error
from push_service.api.asyncapi import Addresses
from push_service.api.auth import PeerAuth
from push_service.api.headers import SecurityHeadersMiddleware
from push_service.api.identity import SubscriberVerifier
from push_service.api.metrics import MetricsPortMiddleware
from push_service.config import Settings
from push_service.limits import BodyLimitMiddleware, ClientAddress, RateLimiter
from push_service.metrics import Metrics
from push_service.models import parse_notification
from push_service.runtime import Runtime
from push_service.vapid_keys import VapidKeys

log = logging.getLogger(__name__)


def create_app(settings: Settings, keys: VapidKeys) -> Starlette:
    """The ASGI app; its lifespan starts and stops the runtime (consumer included)."""
    runtime = Runtime(settings, keys)
    services = api_services(runtime)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services.peers.log_mode()
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = Starlette(
        routes=routes(services),
        middleware=middleware(settings, runtime.metrics),
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.runtime = runtime
    return app


def api_services(runtime: Runtime) -> ApiServices:
    """What the API may use of the runtime: the status store and a publisher, mostly."""
    settings = runtime.settings
    return ApiServices(
        store=runtime.store,
        publish=runtime.publish,
        subscribe=runtime.subscribe,
        unsubscribe=runtime.unsubscribe,
        registry=runtime.registry,
        remove_subscription=runtime.remove_subscription,
        policy=runtime.policy,
        metrics=runtime.metrics,
        vapid_keys=runtime.keys,
        readiness=runtime.readiness,
        rate_limiter=RateLimiter(
            settings.subscribe_rate_limit, settings.subscribe_rate_window_seconds
        ),
        client_address=ClientAddress(settings.trusted_proxies),
        welcome={
            "title": settings.welcome_title,
            "body": settings.welcome_body,
            "action_url": settings.welcome_action_url,
        },
        peers=PeerAuth(settings.api_tokens, settings.production),
        subscribers=SubscriberVerifier(settings),
        parse_message=functools.partial(
            parse_notification,
            policy=runtime.policy,
            max_devices=settings.max_devices_per_message,
            payload_format=settings.push_payload_format,
            key_ids=runtime.keys.ids,
        ),
        addresses=Addresses.of(settings),
        control=runtime.control,
        receipts=runtime.receipts,
        emit=runtime.emit,
        schedule_max_days=settings.schedule_max_days,
    )


def middleware(settings: Settings, metrics: Metrics) -> list[Middleware]:
    # Security headers outermost, so that every answer below carries them; then the
    # metrics listener, which must not go through CORS or the body limits.
    stack = [Middleware(SecurityHeadersMiddleware)]
    if settings.metrics_port:
        stack.append(Middleware(MetricsPortMiddleware, port=settings.metrics_port, metrics=metrics))
    # CORS before the body limit, so that even a 413 reaches the browser readable.
    if settings.cors_allow_origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_allow_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Content-Type", "Authorization"],
                max_age=600,
            )
        )
    stack.append(
        Middleware(
            BodyLimitMiddleware,
            limit=settings.max_request_bytes,
            path_limits={"/notifications": settings.max_notification_request_bytes},
            timeout=settings.http_read_timeout_seconds,
        )
    )
    return stack
