"""The Lua transitions of a status record (one Redis hash per notification).

Fields prefixed `d:` hold a device's final outcome (the first one wins), `r:` a
device waiting for a retry (replaced until the device is final), `x:` a device of a
message that was dead-lettered before any push. `status` is derived from the
counts, never written blindly, so a redelivery or a late parked retry cannot move a
record backwards.
"""

from __future__ import annotations

# ARGV: now, ttl, notification_id, user_id, devices_total, fingerprint, deadline,
# user_verified ('true' | 'false'), then pairs (device id, retry JSON): devices whose push
# services refuse requests now, written as retrying when the record is new (RECORD's
# `retrying` in the same call), and not otherwise (the caller then pushes as usual).
# Returns {state, deadline, done device ids, retrying device JSON, cancelled (1 | 0),
# held (1 if the retries were written)};
# state 1 = new record (or a scheduled one now due),
# 0 = the same notification again, -1 = a different notification under this id (then
# the second item is when the one on record was created).
BEGIN = """
local key = KEYS[1]
local now, ttl, fingerprint = ARGV[1], ARGV[2], ARGV[6]
local stored = redis.call('HGET', key, 'fingerprint')
if stored and stored ~= fingerprint then
  return {-1, redis.call('HGET', key, 'created_at') or '', {}, {}, 0, 0}
end
local state, held = 0, 0
if not stored then
  -- Nothing or only a dead-lettered message is on record: this message takes it over.
  local reason = redis.call('HGET', key, 'reason')
  local created = redis.call('HGET', key, 'created_at') or now
  redis.call('DEL', key)
  redis.call('HSET', key, 'notification_id', ARGV[3], 'user_id', ARGV[4],
             'status', 'processing', 'devices_total', ARGV[5], 'sent', 0, 'failed', 0,
             'fingerprint', fingerprint, 'deadline', ARGV[7],
             'created_at', created, 'updated_at', now, 'user_verified', ARGV[8])
  if reason then redis.call('HSET', key, 'reason', reason) end
  for i = 9, #ARGV, 2 do redis.call('HSET', key, 'r:' .. ARGV[i], ARGV[i + 1]) end
  held = #ARGV > 8 and 1 or 0
  state = 1
elseif redis.call('HGET', key, 'status') == 'scheduled' then
  -- Due: the scheduled record starts now, its deadline counted from send_at.
  redis.call('HSET', key, 'status', 'processing', 'deadline', ARGV[7], 'updated_at', now)
  state = 1
elseif tonumber(ARGV[5]) > tonumber(redis.call('HGET', key, 'devices_total') or '0') then
  -- The same notification again with more devices: the total must cover them.
  redis.call('HSET', key, 'devices_total', ARGV[5])
end
redis.call('EXPIRE', key, ttl)
local done, retrying = {}, {}
if state == 0 then
  -- A scheduled record cancelled before it was due has no deadline yet.
  redis.call('HSETNX', key, 'deadline', ARGV[7])
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    local prefix = string.sub(fields[i], 1, 2)
    if prefix == 'd:' then table.insert(done, string.sub(fields[i], 3))
    elseif prefix == 'r:' then table.insert(retrying, fields[i + 1]) end
  end
end
return {state, redis.call('HGET', key, 'deadline'), done, retrying,
        redis.call('HEXISTS', key, 'cancelled_at'), held}
"""

# ARGV: now, ttl, then triples (device id, JSON, kind) with kind sent | failed | retrying.
RECORD = """
local key = KEYS[1]
local now, ttl = ARGV[1], ARGV[2]
for i = 3, #ARGV, 3 do
  local id, kind = ARGV[i], ARGV[i + 2]
  if kind == 'retrying' then
    if redis.call('HEXISTS', key, 'd:' .. id) == 0 then
      redis.call('HSET', key, 'r:' .. id, ARGV[i + 1])
    end
  elseif redis.call('HSETNX', key, 'd:' .. id, ARGV[i + 1]) == 1 then
    -- A cancel counted every open device as cancelled: one that ends otherwise moves.
    if kind ~= 'cancelled' then
      redis.call('HINCRBY', key, kind, 1)
      if redis.call('HEXISTS', key, 'cancelled_at') == 1 then
        redis.call('HINCRBY', key, 'cancelled', -1)
      end
    end
    redis.call('HDEL', key, 'r:' .. id)
  end
end
local sent = tonumber(redis.call('HGET', key, 'sent') or '0')
local failed = tonumber(redis.call('HGET', key, 'failed') or '0')
local cancelled = tonumber(redis.call('HGET', key, 'cancelled') or '0')
local total = tonumber(redis.call('HGET', key, 'devices_total') or '0')
local status = 'processing'
-- An audience still being resolved has more devices to come than `devices_total` says.
if sent + failed + cancelled >= total and redis.call('HGET', key, 'fanout') ~= 'resolving' then
  if sent > 0 then status = 'sent' elseif failed > 0 then status = 'failed'
  else status = 'cancelled' end
  redis.call('HSETNX', key, 'completed_at', now)
end
redis.call('HSET', key, 'status', status, 'updated_at', now)
redis.call('EXPIRE', key, ttl)
return status
"""

# A message given up before any push. ARGV: now, ttl, notification_id, reason, mode,
# then pairs (device id, JSON). mode `refused`: a different message than the one on
# record (which stays as it is); `abandoned`: this notification, after too many tries.
FAIL = """
local key = KEYS[1]
local now, ttl = ARGV[1], ARGV[2]
if redis.call('HEXISTS', key, 'fingerprint') == 1 then
  if ARGV[5] == 'refused' then
    redis.call('HINCRBY', key, 'refused_messages', 1)
    redis.call('HSET', key, 'last_refused_reason', ARGV[4], 'updated_at', now)
  else
    local sent = tonumber(redis.call('HGET', key, 'sent') or '0')
    redis.call('HSET', key, 'reason', ARGV[4], 'status', (sent > 0) and 'sent' or 'failed',
               'updated_at', now)
    -- An audience given up part-way: its published chunks still end the record.
    if redis.call('HGET', key, 'fanout') == 'resolving' then
      redis.call('HSET', key, 'fanout', 'abandoned')
    end
    redis.call('HSETNX', key, 'completed_at', now)
  end
  redis.call('EXPIRE', key, ttl)
  return redis.call('HGET', key, 'status')
end
for _, field in ipairs(redis.call('HKEYS', key)) do
  if string.sub(field, 1, 2) == 'x:' then redis.call('HDEL', key, field) end
end
local devices = (#ARGV - 5) / 2
redis.call('HSET', key, 'notification_id', ARGV[3], 'status', 'failed', 'reason', ARGV[4],
           'devices_total', devices, 'sent', 0, 'failed', devices,
           'updated_at', now, 'completed_at', now)
redis.call('HSETNX', key, 'created_at', now)
for i = 6, #ARGV, 2 do
  redis.call('HSET', key, 'x:' .. ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', key, ttl)
return 'failed'
"""

# ARGV: device id, outcome. What the User Service made of a device's report. Kept in
# `u:<device>` as well as in the device's outcome: the report is made durable before that
# outcome is written, so its answer can come first. Nothing is written to a record that
# has expired (a bare field without the record's TTL would never go away).
DEACTIVATION = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'u:' .. ARGV[1], ARGV[2])
local field = 'd:' .. ARGV[1]
local raw = redis.call('HGET', KEYS[1], field)
if raw then
  local device = cjson.decode(raw)
  device['deactivation'] = ARGV[2]
  redis.call('HSET', KEYS[1], field, cjson.encode(device))
end
return 1
"""

# BEGIN for one chunk of an audience's fan-out. A fan-out's record holds every device of
# the audience (100,000 and more), so BEGIN's scan of all fields would cost each chunk
# O(audience) inside Redis: this one looks up only the chunk's own devices.
# ARGV: now, ttl, fingerprint, deadline, then the chunk's device ids. Returns as BEGIN; a
# record that is missing (expired) is created with the chunk's devices as its total.
BEGIN_CHUNK = """
local key = KEYS[1]
local now, ttl, fingerprint = ARGV[1], ARGV[2], ARGV[3]
local stored = redis.call('HGET', key, 'fingerprint')
if stored and stored ~= fingerprint then
  return {-1, redis.call('HGET', key, 'created_at') or '', {}, {}}
end
if not stored then
  redis.call('HSET', key, 'status', 'processing', 'devices_total', #ARGV - 4, 'sent', 0,
             'failed', 0, 'fingerprint', fingerprint, 'deadline', ARGV[4],
             'created_at', now, 'updated_at', now)
end
redis.call('EXPIRE', key, ttl)
local done, retrying = {}, {}
for i = 5, #ARGV do
  if redis.call('HEXISTS', key, 'd:' .. ARGV[i]) == 1 then
    table.insert(done, ARGV[i])
  else
    local retry = redis.call('HGET', key, 'r:' .. ARGV[i])
    if retry then table.insert(retrying, retry) end
  end
end
return {stored and 0 or 1, redis.call('HGET', key, 'deadline') or '', done, retrying}
"""
