"""`DELETE /notifications/{id}`: cancel what has not been pushed yet.

Devices scheduled, parked for a retry, or not reached yet end `cancelled` and are
never pushed (`push_service.status.control` says how the record reads). 200 with the
counts; 404 for an unknown (or expired) notification; 409 when every device already
had an outcome. A message still in the queue that the service has not seen has no
record yet: it is unknown here (404).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from push_service.api.responses import error, json_response
from push_service.models import ID_PATTERN
from push_service.status import RedisUnavailable
from push_service.status.control import RecordControl


async def cancel(control: RecordControl, request: Request) -> Response:
    notification_id = request.path_params["notification_id"]
    if not ID_PATTERN.match(notification_id):
        return error(404, "not_found", "no such notification")
    try:
        result = await control.cancel(notification_id)
    except RedisUnavailable:
        return error(503, "redis_unavailable", "the status store is unavailable")
    if result is None:
        return error(404, "not_found", "no such notification (unknown or expired)")
    body = {"notification_id": notification_id, **result.counts()}
    if not result.changed:
        return json_response(
            {
                "error": "already_final",
                "detail": "every device already has an outcome",
                **body,
            },
            409,
        )
    return json_response(body)
