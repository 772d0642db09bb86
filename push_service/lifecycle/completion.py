"""`notification.completed`: a notification's final outcome, told to orchestrators once.

Emitted when a delivery leaves the record final (`sent` or `failed`), before the
message is acked, so a crash in between emits it again on redelivery under the same
`event_id`. The devices come from the delivery itself when it did the whole
notification in one go (the common case, no Redis read), else from the record.
No endpoint URL leaves the service: devices are named by id and origin.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from push_service.endpoints import origin_of
from push_service.models import Notification
from push_service.status import DeviceOutcome, StatusStore

Emit = Callable[..., Awaitable[None]]
Heard = Callable[[str], bool]
EVENT = "notification.completed"
FINAL = ("sent", "failed", "cancelled")
# A larger notification (an audience's fan-out, mostly) is told by its counts alone
# (`devices_omitted`): a 100,000-device list would be read whole into one process and
# sent as one event of megabytes.
MAX_LISTED_DEVICES = 1000
Told = tuple[list[dict[str, Any]], dict[str, int], int]  # devices, counts, devices omitted


class Completion:
    def __init__(self, store: StatusStore, emit: Emit, heard: Heard = lambda _: True) -> None:
        self.store = store
        self.emit = emit
        self.heard = heard  # building an event nobody may listen to is work for nothing

    async def completed(
        self, n: Notification, status: str, outcomes: Sequence[DeviceOutcome], whole: bool
    ) -> None:
        """`outcomes`: what this delivery recorded; `whole`: they are all the devices."""
        if status not in FINAL or not self.heard(EVENT):
            return
        if whole:
            devices, counts, omitted = _delivered(outcomes)
        else:
            devices, counts, omitted = await self._from_record(n.notification_id)
        body: dict[str, Any] = {
            "notification_id": n.notification_id,
            "user_id": n.user_id if n.user_verified else None,
            "status": status,
            "counts": counts,
            "devices": devices,
        }
        if omitted:
            body["devices_omitted"] = omitted
        await self.emit(EVENT, body, event_id=f"{EVENT}:{n.notification_id}")

    async def _from_record(self, notification_id: str) -> Told:
        counts = await self.store.counts(notification_id)
        if counts["devices_total"] > MAX_LISTED_DEVICES:
            return [], counts, counts["devices_total"]
        devices = await self._recorded(notification_id)
        return devices, _counts(d["status"] for d in devices), 0

    async def _recorded(self, notification_id: str) -> list[dict[str, Any]]:
        record = await self.store.get(notification_id)
        found: Iterable[dict[str, Any]] = record["devices"] if record else ()
        return [
            _device(d["device"], d.get("endpoint") or "", d.get("status"), d.get("reason"))
            for d in found
        ]


def _device(device: str, endpoint: str, status: str | None, reason: str | None) -> dict[str, Any]:
    return {
        "device": device,
        "origin": origin_of(endpoint),
        "status": status,
        "reason": reason,
    }


def _delivered(outcomes: Sequence[DeviceOutcome]) -> Told:
    """From this delivery's outcomes. Over MAX_LISTED_DEVICES, counts alone: listing
    10,000 devices (an origin each) and encoding them held the event loop for 90 ms."""
    counts = _counts(o.status for o in outcomes)
    if len(outcomes) > MAX_LISTED_DEVICES:
        return [], counts, len(outcomes)
    return [_device(o.device, o.endpoint, o.status, o.reason) for o in outcomes], counts, 0


def _counts(statuses: Iterable[str | None]) -> dict[str, int]:
    counts = dict.fromkeys(FINAL, 0)
    total = 0
    for status in statuses:
        total += 1
        if status in FINAL:
            counts[status] += 1
    return {"devices_total": total, **counts}
