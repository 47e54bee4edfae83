"""The Redis store's server-side scripts (Lua), their constants formatted from
``core.windows`` so the windows are defined once.

Keys (``{k}`` a ``core.windows.id_key``): ``fraud:c:{k}`` a customer's events (sorted set,
score = time, member = id key, unit separator, cents, running count, running cents: the
running totals over the customer's events in (time, id key) order, so a window's count and
sum come from its first event and the new one, one ranged read per window instead of a scan
of the month in Lua); ``fraud:m:{k}`` a terminal's events
and ``fraud:f:{k}`` those labelled fraud (score = time, member = id key); ``fraud:tx:{k}`` a
transaction's record (hash: ``a`` the aggregates it was answered with, ``f`` its label,
``fk`` its terminal's fraud key, ``t`` its time, ``p`` its cents, unit separator, the first 8
hex digits of the SHA-1 of its customer key: 32 bits, as the embedded store's CRC-32, at
1.4 kB per customer where the whole key took 3.7 kB); ``fraud:latest`` the latest event
time.

``record`` takes a request's transactions and first checks them all (one ``HMGET`` each,
whose answer the recording reuses): an id recorded, or sent earlier in the request, with
another customer, terminal, cents or time stops the script before it writes anything,
answering ``conflict``, the transaction's index and the differing fields (a record without
``p``, written before it was kept, is compared on its terminal and time). Then, in order,
for each: answers a replay from its record, or refuses it as too old (stopping there), or
adds it to its customer and terminal, reads the aggregates exactly as ``core.windows`` does
(``CustomerWindows.read``, ``TerminalWindows.read``) and sets the keys' expiry; events past
retention are dropped at every ``PRUNE_EVERY``-th event of a customer. Calls are what a
script costs (each ``redis.call`` ~3-5 us on machine A, more than most commands' own work),
so the usual transaction, its customer's latest, takes about 15. The script touches keys
it computes from a transaction's record only in ``label``; the
deployment runs Redis with cluster mode disabled.
"""

from __future__ import annotations

from core.windows import (
    CUSTOMER_RETENTION_S,
    CUSTOMER_WINDOWS_S,
    LABEL_DELAY_S,
    TERMINAL_RETENTION_S,
    TERMINAL_WINDOWS_S,
)

LATEST_KEY = "fraud:latest"
SEPARATOR = "\x1f"  # below every character an id may hold (ids are printable)
KEYS_PER_TRANSACTION = 4
PRUNE_EVERY = 8  # a customer's events past retention are removed at every 8th of its events


def keys_for(customer: str, terminal: str, key: str) -> list[str]:
    return [f"fraud:c:{customer}", f"fraud:m:{terminal}", f"fraud:f:{terminal}", f"fraud:tx:{key}"]


def _lua_list(values: tuple[int, ...]) -> str:
    return "{" + ", ".join(str(v) for v in values) + "}"


_RECORD = """
local CW = __CUSTOMER_WINDOWS__
local TW = __TERMINAL_WINDOWS__
local DELAY = __DELAY__
local skew = tonumber(ARGV[1])
local backfill = ARGV[2] == '1'
local c_keep = __CUSTOMER_RETENTION__ + skew
local t_keep = __TERMINAL_RETENTION__ + skew
local tx_keep = t_keep
local function f(x) return string.format('%.0f', x) end
local PRUNE_EVERY = __PRUNE_EVERY__
-- a customer's event: id key, US, cents, US, running count, US, running cents (the running
-- totals over the customer's events in (time, id key) order, this one included)
local function member(id, cents, n, p)
  return id .. '\\31' .. f(cents) .. '\\31' .. f(n) .. '\\31' .. f(p)
end
local function totals(m)
  local c, n, p = string.match(m, '\\31(%-?%d+)\\31(%d+)\\31(%-?%d+)$')
  return tonumber(c), tonumber(n), tonumber(p)
end
-- an event before the customer's latest (or at its second): placed by rank, and the later
-- events' running totals move up by it (out of order within the skew: seldom, and few)
local function insert(ck, t, id, cents)
  local probe = id .. '\\31'  -- sorts where this id's member will, among events at t
  redis.call('ZADD', ck, t, probe)
  local r = redis.call('ZRANK', ck, probe)
  redis.call('ZREM', ck, probe)
  local n0, p0 = 0, 0
  if r > 0 then
    local c0
    c0, n0, p0 = totals(redis.call('ZRANGE', ck, r - 1, r - 1)[1])
  end
  local later = redis.call('ZRANGE', ck, r, -1, 'WITHSCORES')
  for j = 1, #later, 2 do
    local m = later[j]
    local c, n, p = totals(m)
    redis.call('ZREM', ck, m)
    redis.call('ZADD', ck, later[j + 1], member(string.match(m, '^(.-)\\31'), c, n + 1, p + cents))
  end
  redis.call('ZADD', ck, t, member(id, cents, n0 + 1, p0 + cents))
  return n0 + 1, p0 + cents
end
-- the fields of a retry that differ from the first: p = cents, unit separator, a digest of
-- the customer key (p0 is false in a record written before p was kept)
local function differs(p0, fk0, t0, p, fk, t)
  local d = {}
  local a, b
  if p0 then
    a, b = string.find(p0, '\\31', 1, true), string.find(p, '\\31', 1, true)
    if string.sub(p0, a + 1) ~= string.sub(p, b + 1) then d[#d + 1] = 'customer_id' end
  end
  if fk0 ~= fk then d[#d + 1] = 'terminal_id' end
  if p0 and string.sub(p0, 1, a) ~= string.sub(p, 1, b) then d[#d + 1] = 'amount' end
  if tonumber(t0) ~= t then d[#d + 1] = 'timestamp' end
  return table.concat(d, ',')
end
local latest = tonumber(redis.call('GET', KEYS[1]) or '0')
local out = {}
local n = (#ARGV - 2) / 3
-- every transaction is checked before any is written: a request with a conflict records none
local seen, prints, first, done = {}, {}, {}, {}
for i = 0, n - 1 do
  local fk, id = KEYS[4 + 4 * i], ARGV[3 + 3 * i]
  local t = tonumber(ARGV[4 + 3 * i])
  local p = ARGV[5 + 3 * i] .. '\\31' .. string.sub(redis.sha1hex(KEYS[2 + 4 * i]), 1, 8)
  prints[i] = p
  local j, d = first[id], ''
  if j then
    d = differs(prints[j], KEYS[4 + 4 * j], ARGV[4 + 3 * j], p, fk, t)
  else
    first[id] = i
    local rec = redis.call('HMGET', KEYS[5 + 4 * i], 'a', 'p', 'fk', 't')
    if rec[1] then
      seen[i] = rec[1]
      if rec[2] ~= p or rec[3] ~= fk or tonumber(rec[4]) ~= t then
        d = differs(rec[2], rec[3], rec[4], p, fk, t)
      end
    end
  end
  if d ~= '' then return {'conflict', tostring(i), d, {}} end
end
for i = 0, n - 1 do
  local ck, tk, fk, xk = KEYS[2 + 4 * i], KEYS[3 + 4 * i], KEYS[4 + 4 * i], KEYS[5 + 4 * i]
  local id, t, cents = ARGV[3 + 3 * i], tonumber(ARGV[4 + 3 * i]), tonumber(ARGV[5 + 3 * i])
  local answered = seen[i] or done[id]  -- done: an id sent earlier in the request
  if answered then
    done[id] = answered
    out[#out + 1] = '1:' .. answered
  elseif t < latest - skew and not backfill then
    redis.call('SET', KEYS[1], f(latest))
    return {'old', tostring(i), f(latest), out}
  else
    -- the customer: the usual event is its customer's latest, appended after one read
    local last = redis.call('ZRANGE', ck, -1, -1, 'WITHSCORES')
    local lt = tonumber(last[2])
    local nme, pme, newest
    if lt == nil or lt < t then
      local n0, p0 = 0, 0
      if lt ~= nil then
        local c0
        c0, n0, p0 = totals(last[1])
      end
      nme, pme = n0 + 1, p0 + cents
      redis.call('ZADD', ck, t, member(id, cents, nme, pme))
      newest = t
    else
      nme, pme = insert(ck, t, id, cents)
      newest = lt
    end
    -- each window from its first event: count and sum are this event's running totals less
    -- the first's before it. Widest first: a narrower window starts at the same event when
    -- that event is inside it; one that begins after every earlier event holds this one only
    local agg = {}
    local fc, fn, fp, fscore = cents, nme, pme, t
    for w = 3, 1, -1 do
      local lo = t - CW[w]
      if w == 3 or fscore <= lo then
        if lt == nil or (lt < t and lt <= lo) then
          fc, fn, fp, fscore = cents, nme, pme, t
        else
          local r = redis.call(
            'ZRANGEBYSCORE', ck, '(' .. f(lo), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
          fc, fn, fp = totals(r[1])
          fscore = tonumber(r[2])
        end
      end
      agg[2 * w - 1] = f(nme - fn + 1)
      agg[2 * w] = f(pme - fp + fc)
    end
    -- the terminal: counts by time range; its fraud set is usually empty
    redis.call('ZADD', tk, t, id)
    local top = t - DELAY
    local frauds = redis.call('ZCARD', fk) > 0
    for w = 1, 3 do
      local lo = '(' .. f(top - TW[w])
      agg[5 + 2 * w] = f(redis.call('ZCOUNT', tk, lo, f(top)))
      agg[6 + 2 * w] = frauds and f(redis.call('ZCOUNT', fk, lo, f(top))) or '0'
    end
    local a = table.concat(agg, ',')
    redis.call('HSET', xk, 'a', a, 'f', '0', 'fk', fk, 't', f(t), 'p', prints[i])
    redis.call('EXPIRE', xk, tx_keep)
    redis.call('EXPIRE', ck, c_keep)
    redis.call('EXPIRE', tk, t_keep)
    if t > latest then latest = t end
    -- events past retention go at every PRUNE_EVERY-th event of a customer: no read
    -- reaches them, and a removal per transaction would cost three more calls
    if nme % PRUNE_EVERY == 0 then
      redis.call('ZREMRANGEBYSCORE', ck, '-inf', '(' .. f(newest - c_keep))
      redis.call('ZREMRANGEBYSCORE', tk, '-inf', '(' .. f(latest - t_keep))
      redis.call('ZREMRANGEBYSCORE', fk, '-inf', '(' .. f(latest - t_keep))
    end
    done[id] = a
    out[#out + 1] = '0:' .. a
  end
end
redis.call('SET', KEYS[1], f(latest))
return {'ok', '', '', out}
"""

LABEL = """
local out = {}
for i = 1, #KEYS do
  local rec = redis.call('HMGET', KEYS[i], 'f', 'fk', 't')
  if not rec[1] then
    out[i] = 0
  else
    if rec[1] ~= ARGV[i] then
      local id = string.sub(KEYS[i], 10)
      if ARGV[i] == '1' then
        redis.call('ZADD', rec[2], tonumber(rec[3]), id)
        redis.call('EXPIRE', rec[2], redis.call('TTL', KEYS[i]))
      else
        redis.call('ZREM', rec[2], id)
      end
      redis.call('HSET', KEYS[i], 'f', ARGV[i])
    end
    out[i] = 1
  end
end
return out
"""


def record_script() -> str:
    """The record script with the window constants of ``core.windows``."""
    return (
        _RECORD.replace("__CUSTOMER_WINDOWS__", _lua_list(CUSTOMER_WINDOWS_S))
        .replace("__TERMINAL_WINDOWS__", _lua_list(TERMINAL_WINDOWS_S))
        .replace("__DELAY__", str(LABEL_DELAY_S))
        .replace("__CUSTOMER_RETENTION__", str(CUSTOMER_RETENTION_S))
        .replace("__TERMINAL_RETENTION__", str(TERMINAL_RETENTION_S))
        .replace("__PRUNE_EVERY__", str(PRUNE_EVERY))
    )
