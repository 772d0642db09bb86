"""The fan-out state of a status record: how far an audience has been resolved.

An audience message is resolved chunk by chunk (`push_service.fanout`). Its record
keeps, next to the counts, `fanout` (`resolving` | `done`), `audience` (`user:<id>` or
`topic:<name>`), `fanout_cursor` (the registry cursor after the last published chunk)
and `fanout_chunks`. A chunk's devices join `devices_total` when the chunk is
published, here, not when it is delivered; while `fanout` reads `resolving` the record
cannot become final (RECORD checks it), however many devices already have an outcome.

Each step is a compare-and-set on the cursor: a resolver that crashed is resumed from
the last recorded cursor by its redelivery, and a second resolver of the same message
(a redelivery while the first still runs) counts nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from push_service.status.records import utc_now
from push_service.status.store import StatusStore

EMPTY_AUDIENCE = "empty_audience"

# ARGV: now, ttl, audience. Returns {fanout state, cursor}.
START = """
local key = KEYS[1]
local state = redis.call('HGET', KEYS[1], 'fanout')
if not state then
  state = 'resolving'
  redis.call('HSET', key, 'fanout', state, 'audience', ARGV[3], 'fanout_cursor', '',
             'fanout_chunks', 0, 'updated_at', ARGV[1])
  redis.call('EXPIRE', key, ARGV[2])
end
return {state, redis.call('HGET', key, 'fanout_cursor') or ''}
"""

# ARGV: now, ttl, cursor before, cursor after, devices in the chunk, last ('1' | '0').
# Returns {1 if this step was taken (0: another resolver is ahead), status}.
STEP = """
local key = KEYS[1]
local now, ttl = ARGV[1], ARGV[2]
local state = redis.call('HGET', key, 'fanout')
local cursor = redis.call('HGET', key, 'fanout_cursor') or ''
if state ~= 'resolving' or cursor ~= ARGV[3] then
  -- This very step again (a call made twice) counts as taken; another resolver's not.
  local again = cursor == ARGV[4] and ((ARGV[6] == '1') == (state == 'done'))
  return {again and 1 or 0, redis.call('HGET', key, 'status') or ''}
end
local count = tonumber(ARGV[5])
if count > 0 then
  redis.call('HINCRBY', key, 'devices_total', count)
  redis.call('HINCRBY', key, 'fanout_chunks', 1)
end
redis.call('HSET', key, 'fanout_cursor', ARGV[4], 'updated_at', now)
if ARGV[6] == '1' then
  redis.call('HSET', key, 'fanout', 'done')
  local sent = tonumber(redis.call('HGET', key, 'sent') or '0')
  local failed = tonumber(redis.call('HGET', key, 'failed') or '0')
  local total = tonumber(redis.call('HGET', key, 'devices_total') or '0')
  if total == 0 then
    redis.call('HSET', key, 'status', 'failed', 'reason', 'empty_audience')
    redis.call('HSETNX', key, 'completed_at', now)
  elseif sent + failed >= total then
    redis.call('HSET', key, 'status', (sent > 0) and 'sent' or 'failed')
    redis.call('HSETNX', key, 'completed_at', now)
  end
end
redis.call('EXPIRE', key, ttl)
return {1, redis.call('HGET', key, 'status') or ''}
"""


@dataclass(frozen=True)
class Step:
    taken: bool  # False: another resolver of the same message is ahead; stop
    status: str  # of the record after the step


class FanoutLedger:
    def __init__(self, store: StatusStore) -> None:
        self.store = store
        self._start = store.register(START)
        self._step = store.register(STEP)

    async def start(self, notification_id: str, audience: str) -> tuple[str, str]:
        """Mark the record's audience as resolving (unless it is already); returns the
        fan-out state (`resolving` | `done`) and the cursor to resume after."""
        args = [utc_now(), self.store.ttl, audience]
        state, cursor = await self.store.run(self._start, notification_id, args)
        return str(state), str(cursor)

    async def step(
        self, notification_id: str, before: str, after: str | None, devices: int
    ) -> Step:
        """Count a published chunk (`devices`) and move the cursor from `before` to
        `after`; `after` None ends the fan-out (the record may become final then)."""
        last = after is None
        args = [utc_now(), self.store.ttl, before, after or "", devices, "1" if last else "0"]
        taken, status = await self.store.run(self._step, notification_id, args)
        return Step(bool(taken), str(status))
