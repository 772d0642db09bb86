"""JSON responses and the one error shape every refusal uses: `{"error", "detail"}`."""

from __future__ import annotations

import datetime
from typing import Any

import orjson
from starlette.responses import JSONResponse, Response

# Status records and errors are per caller and moment: never kept by a cache.
NO_STORE = "no-store"
# Documents that change only with a deployment: kept, but revalidated before use.
REVALIDATE = "no-cache"


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json_response(
    content: Any,
    status: int = 200,
    *,
    cache: str = NO_STORE,
    headers: dict[str, str] | None = None,
) -> Response:
    return ORJSONResponse(content, status, headers={"Cache-Control": cache, **(headers or {})})


def error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": code, "detail": detail}, status, headers=headers)


def utc_timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
