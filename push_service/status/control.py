"""Record transitions outside delivery: scheduled, cancelled, and receipts from browsers.

- `schedule`: a message whose `send_at` is ahead makes the record `scheduled` (with
  `send_at`) before it waits in a delay queue; BEGIN turns it `processing` when it is due.
- `cancel`: every device without a final outcome ends `cancelled`. Devices parked for a
  retry (`r:`) get their `d:` now; devices the record has not seen yet (a scheduled
  message, a delivery under way) are covered by the notification-level `cancelled_at`,
  which BEGIN hands to the delivery, and which records them `cancelled` without a push.
  The `cancelled` count is settled at once (devices_total - sent - failed); a push that
  was already under way and still ends sent or failed moves from it to its own count,
  so sent + failed + cancelled stays devices_total.
- `receipt`: a browser's delivered / clicked / closed, once per device and kind.

`status` when every device has an outcome: `sent` if any was sent, else `failed` if
any failed, else `cancelled`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from push_service.errors import DuplicateNotification
from push_service.status.records import utc_now
from push_service.status.store import StatusStore

FINAL_STATUSES = ("sent", "failed", "cancelled")
RECEIPT_EVENTS = ("delivered", "clicked", "closed")

# ARGV: now, ttl, notification_id, user_id, devices_total, fingerprint, send_at (ISO),
# user_verified. Returns {state, cancelled}: state 1 = scheduled, 0 = on record already,
# -1 = another notification holds the id.
SCHEDULE = """
local key = KEYS[1]
local stored = redis.call('HGET', key, 'fingerprint')
if stored and stored ~= ARGV[6] then return {-1, 0} end
local state = 0
if not stored then
  local created = redis.call('HGET', key, 'created_at') or ARGV[1]
  redis.call('DEL', key)
  redis.call('HSET', key, 'notification_id', ARGV[3], 'user_id', ARGV[4],
             'status', 'scheduled', 'send_at', ARGV[7], 'devices_total', ARGV[5],
             'sent', 0, 'failed', 0, 'fingerprint', ARGV[6], 'created_at', created,
             'updated_at', ARGV[1], 'user_verified', ARGV[8])
  state = 1
end
if redis.call('TTL', key) < tonumber(ARGV[2]) then redis.call('EXPIRE', key, ARGV[2]) end
return {state, redis.call('HEXISTS', key, 'cancelled_at')}
"""

# ARGV: now. Returns {found (1 | 0 | -1 unknown), status, sent, failed, cancelled, total};
# found 0: every device already had an outcome (nothing changed).
CANCEL = """
local key = KEYS[1]
if redis.call('HEXISTS', key, 'fingerprint') == 0 then
  if redis.call('EXISTS', key) == 0 then return {-1, '', 0, 0, 0, 0} end
end
local function n(field) return tonumber(redis.call('HGET', key, field) or '0') end
local sent, failed, total = n('sent'), n('failed'), n('devices_total')
local status = redis.call('HGET', key, 'status')
if status == 'sent' or status == 'failed' or status == 'cancelled' then
  return {0, status, sent, failed, n('cancelled'), total}
end
local parked = {}
local fields = redis.call('HGETALL', key)
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 2) == 'r:' then table.insert(parked, {fields[i], fields[i + 1]}) end
end
for _, entry in ipairs(parked) do
  local id = string.sub(entry[1], 3)
  local device = cjson.decode(entry[2])
  device['status'], device['reason'], device['at'] = 'cancelled', 'cancelled', ARGV[1]
  device['next_attempt_at'] = nil
  redis.call('HSETNX', key, 'd:' .. id, cjson.encode(device))
  redis.call('HDEL', key, entry[1])
end
local cancelled = math.max(0, total - sent - failed)
status = 'cancelled'
if sent > 0 then status = 'sent' elseif failed > 0 then status = 'failed' end
redis.call('HSET', key, 'cancelled', cancelled, 'cancelled_at', ARGV[1], 'status', status,
           'updated_at', ARGV[1])
redis.call('HSETNX', key, 'completed_at', ARGV[1])
return {1, status, sent, failed, cancelled, total}
"""

# ARGV: device id, event, now. Returns 1 recorded, 0 a replay, -1 no such record.
RECEIPT = """
local key = KEYS[1]
if redis.call('HEXISTS', key, 'fingerprint') == 0 then return -1 end
local field = 'e:' .. ARGV[1]
local raw = redis.call('HGET', key, field)
local seen = raw and cjson.decode(raw) or {}
local name = ARGV[2] .. '_at'
if seen[name] then return 0 end
seen[name] = ARGV[3]
redis.call('HSET', key, field, cjson.encode(seen))
redis.call('HINCRBY', key, ARGV[2], 1)
return 1
"""


@dataclass(frozen=True)
class Cancelled:
    changed: bool  # False: every device already had an outcome
    status: str
    sent: int
    failed: int
    cancelled: int
    devices_total: int

    def counts(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "devices_total": self.devices_total,
            "sent": self.sent,
            "failed": self.failed,
            "cancelled": self.cancelled,
        }


class RecordControl:
    """The transitions above, on the status store's records (same keys, same batching)."""

    def __init__(self, store: StatusStore) -> None:
        self.store = store
        self._schedule = store.register(SCHEDULE)
        self._cancel = store.register(CANCEL)
        self._receipt = store.register(RECEIPT)

    async def schedule(
        self, notification_id: str, user_id: str | None, total: int, *, fingerprint: str,
        send_at: str, ttl: int, user_verified: bool = True,
    ) -> bool:  # fmt: skip
        """Record `scheduled` (unless on record); True when the notification is cancelled.

        `ttl`: the record must outlive the wait. Raises DuplicateNotification.
        """
        args = [utc_now(), ttl, notification_id, user_id or "", total, fingerprint, send_at]
        args.append("true" if user_verified else "false")
        state, cancelled = await self.store.call(self._schedule, notification_id, args)
        if state == -1:
            raise DuplicateNotification(
                f"notification_id {notification_id!r} is on record for a different "
                "notification; use a new id"
            )
        return bool(cancelled)

    async def cancel(self, notification_id: str) -> Cancelled | None:
        """Cancel what has not been pushed; None when no such record exists."""
        found, status, *counts = await self.store.call(self._cancel, notification_id, [utc_now()])
        if found == -1:
            return None
        return Cancelled(found == 1, status, *(int(c) for c in counts))

    async def receipt(self, notification_id: str, device: str, event: str) -> int:
        """1 recorded, 0 already recorded (a replay), -1 no such record."""
        args = [device, event, utc_now()]
        result: int = await self.store.call(self._receipt, notification_id, args)
        return result
