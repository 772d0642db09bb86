"""Liveness, readiness and the VAPID public key: public, cheap, for probes and browsers."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from push_service import SERVICE_NAME, __version__
from push_service.api.responses import REVALIDATE, json_response, utc_timestamp
from push_service.api.services import ApiServices


def _redis_health(state: dict[str, Any]) -> dict[str, Any]:
    health: dict[str, Any] = {"connected": state["redis"]}
    if state.get("redis_primary"):
        health["primary"] = state["redis_primary"]  # through Sentinel: the one in use
    return health


class HealthRoutes:
    def __init__(self, services: ApiServices) -> None:
        self.s = services

    def routes(self) -> list[Route]:
        return [
            Route("/health", self.health),
            Route("/ready", self.ready),
            Route("/vapid_public_key", self.vapid_public_key),
        ]

    async def health(self, request: Request) -> Response:
        state = await self.s.readiness()
        return json_response(
            {
                "status": "healthy",
                "service": SERVICE_NAME,
                "version": __version__,
                "timestamp": utc_timestamp(),
                "dependencies": {
                    "rabbitmq": {
                        "connected": state["rabbitmq"],
                        "consuming": state["consuming"],
                        "node": state.get("rabbitmq_node"),
                    },
                    "redis": _redis_health(state),
                },
                "in_flight_messages": state["in_flight"],
            }
        )

    async def ready(self, request: Request) -> Response:
        state = await self.s.readiness()
        ready = state["consuming"] and state["redis"]
        body = {
            "status": "ready" if ready else "not_ready",
            "rabbitmq": state["consuming"],
            "redis": state["redis"],
        }
        return json_response(body, 200 if ready else 503)

    async def vapid_public_key(self, request: Request) -> Response:
        # Revalidated rather than cached for long: a rotated key must reach new subscribers.
        keys = self.s.vapid_keys
        body = {"public_key": keys.public_key(), "key_id": keys.current_id}
        return json_response(body, cache=REVALIDATE)
