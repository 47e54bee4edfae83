"""The Redis store's server-side scripts (Lua), their constants formatted from
``core.windows`` so the windows are defined once.

Keys (``{k}`` a ``core.windows.id_key``): ``fraud:c:{k}`` a customer's events (sorted set,
score = time, member = id key, unit separator, then cents, running count and running cents
packed in 20 bytes (``MEMBER``): the running totals over the customer's events in
(time, id key) order, so a window's count and sum come from its first event and the new one,
one ranged read per window instead of a scan of the month in Lua; members at one score sort
by their id key, the separator being below every character an id may hold);
``fraud:m:{k}`` a terminal's events and ``fraud:f:{k}`` those labelled fraud (score = time,
member = id key); ``fraud:tx:{k}`` a transaction's record (a string: its label ``0`` or
``1``, the aggregates it was answered with packed as ``AGGREGATES``, then its time, cents,
customer digest and terminal fraud key separated by unit separators: what a retry must
repeat, the digest being ``base.customer_hash`` in 8 hex digits); ``fraud:latest`` the
latest event time.

``record`` takes a request's transactions and first checks them all (one ``GET`` each, whose
answer the recording reuses): an id recorded, or sent earlier in the request, with another
customer, terminal, cents or time stops the script before it writes anything, answering
``conflict``, the transaction's index and the differing fields. Then, in order, for each:
answers a replay from its record, or refuses it as too old (stopping there), or adds it to
its customer and terminal, reads the aggregates exactly as ``core.windows`` does
(``CustomerWindows.read``, ``TerminalWindows.read``) and sets the keys' expiry; events past
retention are dropped at every ``PRUNE_EVERY``-th event of a customer. It answers the packed
aggregates of each transaction and a ``0``/``1`` (replayed) per transaction.

What a script costs is its calls and its number-to-string conversions (redis 7.0 on the
2-core build VM: ~1-2 us a ``redis.call``, ~0.8 us a ``string.format``, ``tostring`` or a
Lua number passed to ``redis.call``, ~0.2 us a ``struct.pack``). So the usual transaction,
its customer's latest, takes about 12 calls and no conversion: the client sends the window
bounds as text (``transaction_args``; Python formats an int ~10x cheaper), the script passes
the time and cents on as it got them and packs the numbers it makes. The script touches keys
it computes from a transaction's record only in ``label``; the deployment runs Redis with
cluster mode disabled.
"""

from __future__ import annotations

import struct

from core.windows import (
    CUSTOMER_WINDOWS_S,
    LABEL_DELAY_S,
    TERMINAL_WINDOWS_S,
)
from serving.feature_store.base import (
    Transaction,
    customer_hash,
    customer_horizon_s,
    record_ttl_s,
)

LATEST_KEY = "fraud:latest"
SEPARATOR = "\x1f"  # below every character an id may hold (ids are printable)
ARGS_PER_TRANSACTION = 11
PRUNE_EVERY = 8  # a customer's events past retention are removed at every 8th of its events
# customer (count, cents) x 3 windows, then terminal (count, frauds) x 3 windows; counts are
# at most the events a key holds (32 bits), cent sums 64 bits
AGGREGATES = struct.Struct("<iqiqiqiiiiii")
# what follows a customer event's id key and separator: its cents, running count and
# running cents
MEMBER = struct.Struct("<qiq")


def keys_for(customer: str, terminal: str, key: str) -> list[str]:
    return [f"fraud:c:{customer}", f"fraud:m:{terminal}", f"fraud:f:{terminal}", f"fraud:tx:{key}"]


def script_args(max_skew_s: int, backfill: bool) -> list[str]:
    """The record script's leading arguments: the skew, the backfill flag and the expiry of
    customer keys and of terminal keys and records, in seconds (``base``'s horizons: no
    accepted event reads past them). The same for every call of a store: made once."""
    return [
        str(max_skew_s),
        "1" if backfill else "0",
        str(-customer_horizon_s(0, max_skew_s)),
        str(record_ttl_s(max_skew_s)),
    ]


_W1, _W7, _W30 = CUSTOMER_WINDOWS_S
_N1, _N7, _N30 = TERMINAL_WINDOWS_S


def transaction_args(tx: Transaction) -> list[str]:
    """A transaction's arguments: id key, time, cents, customer digest, then the window
    bounds as ``ZCOUNT`` takes them: the customer windows' exclusive lower ends (1, 7, 30
    days), the terminal windows' (1, 7, 30 days) and their inclusive upper end."""
    t = tx.time_s
    top = t - LABEL_DELAY_S
    return [
        tx.key,
        str(t),
        str(tx.cents),
        f"{customer_hash(tx.customer):08x}",
        f"({t - _W1}",
        f"({t - _W7}",
        f"({t - _W30}",
        f"({top - _N1}",
        f"({top - _N7}",
        f"({top - _N30}",
        str(top),
    ]


def _lua_format(layout: struct.Struct) -> str:
    """Lua's struct format for a Python one of little-endian ``i`` and ``q`` fields."""
    return "".join({"i": "i4", "q": "i8"}.get(c, c) for c in layout.format)


_RECORD = """
local CW = __CUSTOMER_WINDOWS__
local AGG, ALEN = '__AGGREGATES__', __AGGREGATES_BYTES__
local MEMBER, MLEN = '__MEMBER__', __MEMBER_BYTES__
local skew = tonumber(ARGV[1])
local backfill = ARGV[2] == '1'
local c_keep_s, t_keep_s = ARGV[3], ARGV[4]
local c_keep, t_keep = tonumber(c_keep_s), tonumber(t_keep_s)
local PRUNE_EVERY = __PRUNE_EVERY__
local NARGS = __ARGS_PER_TRANSACTION__
local function f(x) return string.format('%.0f', x) end  -- seldom: at pruning only
-- a customer's event: id key, US, then cents, running count and running cents packed (the
-- running totals over the customer's events in (time, id key) order, this one included)
local function member(id, cents, n, p)
  return id .. '\\31' .. struct.pack(MEMBER, cents, n, p)
end
local function totals(m)
  local c, n, p = struct.unpack(MEMBER, m, #m - MLEN + 1)
  return c, n, p
end
-- an event before the customer's latest (or at its second): placed by rank, and the later
-- events' running totals move up by it (out of order within the skew: seldom, and few)
local function insert(ck, ts, id, cents)
  local probe = id .. '\\31'  -- sorts where this id's member will, among events at ts
  redis.call('ZADD', ck, ts, probe)
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
    local id_j = string.sub(m, 1, #m - MLEN - 1)
    redis.call('ZADD', ck, later[j + 1], member(id_j, c, n + 1, p + cents))
  end
  redis.call('ZADD', ck, ts, member(id, cents, n0 + 1, p0 + cents))
  return n0 + 1, p0 + cents
end
-- what a retry must repeat: time, US, cents, US, customer digest, US, terminal fraud key
local function fields(tail)
  return string.match(tail, '^(.-)\\31(.-)\\31(.-)\\31(.*)$')
end
local function differs(tail0, tail)
  local t0, c0, h0, fk0 = fields(tail0)
  local t, c, h, fk = fields(tail)
  local d = {}
  if h0 ~= h then d[#d + 1] = 'customer_id' end
  if fk0 ~= fk then d[#d + 1] = 'terminal_id' end
  if c0 ~= c then d[#d + 1] = 'amount' end
  if t0 ~= t then d[#d + 1] = 'timestamp' end
  return table.concat(d, ',')
end
local latest_s = redis.call('GET', KEYS[1]) or '0'
local latest = tonumber(latest_s)
local moved = false  -- latest_s changed: written back at the end
local out, replayed = {}, {}
local n = (#ARGV - 4) / NARGS
-- every transaction is checked before any is written: a request with a conflict records none
local seen, tails, first, done = {}, {}, {}, {}
for i = 0, n - 1 do
  local b = 5 + NARGS * i
  local id = ARGV[b]
  local tail = table.concat({ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], KEYS[4 + 4 * i]}, '\\31')
  tails[i] = tail
  local j, d = first[id], ''
  if j then
    if tails[j] ~= tail then d = differs(tails[j], tail) end
  else
    first[id] = i
    local rec = redis.call('GET', KEYS[5 + 4 * i])
    if rec then
      seen[i] = string.sub(rec, 2, ALEN + 1)
      local tail0 = string.sub(rec, ALEN + 2)
      if tail0 ~= tail then d = differs(tail0, tail) end
    end
  end
  if d ~= '' then return {'conflict', tostring(i), d, {}} end
end
for i = 0, n - 1 do
  local ck, tk, fk, xk = KEYS[2 + 4 * i], KEYS[3 + 4 * i], KEYS[4 + 4 * i], KEYS[5 + 4 * i]
  local b = 5 + NARGS * i
  local id, ts = ARGV[b], ARGV[b + 1]
  local t, cents = tonumber(ts), tonumber(ARGV[b + 2])
  local answered = seen[i] or done[id]  -- done: an id sent earlier in the request
  if answered then
    done[id] = answered
    out[i + 1], replayed[i + 1] = answered, '1'
  elseif t < latest - skew and not backfill then
    if moved then redis.call('SET', KEYS[1], latest_s) end
    return {'old', tostring(i), latest_s, out}
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
      redis.call('ZADD', ck, ts, member(id, cents, nme, pme))
      newest = t
    else
      nme, pme = insert(ck, ts, id, cents)
      newest = lt
    end
    -- each window from its first event: count and sum are this event's running totals less
    -- the first's before it. Widest first: a narrower window starts at the same event when
    -- that event is inside it; one that begins after every earlier event holds this one only
    local count, sum = {}, {}
    local fc, fn, fp, fscore = cents, nme, pme, t
    for w = 3, 1, -1 do
      local lo = t - CW[w]
      if w == 3 or fscore <= lo then
        if lt == nil or (lt < t and lt <= lo) then
          fc, fn, fp, fscore = cents, nme, pme, t
        else
          local r = redis.call(
            'ZRANGEBYSCORE', ck, ARGV[b + 3 + w], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
          fc, fn, fp = totals(r[1])
          fscore = tonumber(r[2])
        end
      end
      count[w], sum[w] = nme - fn + 1, pme - fp + fc
    end
    -- the terminal: counts by time range; its fraud set is usually empty
    redis.call('ZADD', tk, ts, id)
    local top = ARGV[b + 10]
    local n1 = redis.call('ZCOUNT', tk, ARGV[b + 7], top)
    local n7 = redis.call('ZCOUNT', tk, ARGV[b + 8], top)
    local n30 = redis.call('ZCOUNT', tk, ARGV[b + 9], top)
    local f1, f7, f30 = 0, 0, 0
    if redis.call('ZCARD', fk) > 0 then
      f1 = redis.call('ZCOUNT', fk, ARGV[b + 7], top)
      f7 = redis.call('ZCOUNT', fk, ARGV[b + 8], top)
      f30 = redis.call('ZCOUNT', fk, ARGV[b + 9], top)
    end
    local a = struct.pack(
      AGG, count[1], sum[1], count[2], sum[2], count[3], sum[3], n1, f1, n7, f7, n30, f30)
    redis.call('SET', xk, '0' .. a .. tails[i], 'EX', t_keep_s)
    redis.call('EXPIRE', ck, c_keep_s)
    redis.call('EXPIRE', tk, t_keep_s)
    if t > latest then latest, latest_s, moved = t, ts, true end
    -- events past retention go at every PRUNE_EVERY-th event of a customer: no read
    -- reaches them, and a removal per transaction would cost three more calls
    if nme % PRUNE_EVERY == 0 then
      redis.call('ZREMRANGEBYSCORE', ck, '-inf', '(' .. f(newest - c_keep))
      local horizon = '(' .. f(latest - t_keep)
      redis.call('ZREMRANGEBYSCORE', tk, '-inf', horizon)
      redis.call('ZREMRANGEBYSCORE', fk, '-inf', horizon)
    end
    done[id] = a
    out[i + 1], replayed[i + 1] = a, '0'
  end
end
if moved then redis.call('SET', KEYS[1], latest_s) end
return {'ok', '', table.concat(replayed), out}
"""

# a record: label, the packed aggregates, then time, cents, customer digest, fraud key
_LABEL = """
local out = {}
for i = 1, #KEYS do
  local rec = redis.call('GET', KEYS[i])
  if not rec then
    out[i] = 0
  else
    if string.sub(rec, 1, 1) ~= ARGV[i] then
      local t, fk = string.match(
        rec, '^(%d+)\\31[^\\31]*\\31[^\\31]*\\31(.*)$', __AGGREGATES_BYTES__ + 2)
      local id = string.sub(KEYS[i], 10)
      if ARGV[i] == '1' then
        redis.call('ZADD', fk, t, id)
        redis.call('EXPIRE', fk, redis.call('TTL', KEYS[i]))
      else
        redis.call('ZREM', fk, id)
      end
      redis.call('SET', KEYS[i], ARGV[i] .. string.sub(rec, 2), 'KEEPTTL')
    end
    out[i] = 1
  end
end
return out
"""


def _lua_list(values: tuple[int, ...]) -> str:
    return "{" + ", ".join(str(v) for v in values) + "}"


def formatted(source: str) -> str:
    """A script's source with the constants of ``core.windows`` and the packed layouts."""
    return (
        source.replace("__CUSTOMER_WINDOWS__", _lua_list(CUSTOMER_WINDOWS_S))
        .replace("__AGGREGATES__", _lua_format(AGGREGATES))
        .replace("__MEMBER__", _lua_format(MEMBER))
        .replace("__MEMBER_BYTES__", str(MEMBER.size))
        .replace("__AGGREGATES_BYTES__", str(AGGREGATES.size))
        .replace("__PRUNE_EVERY__", str(PRUNE_EVERY))
        .replace("__ARGS_PER_TRANSACTION__", str(ARGS_PER_TRANSACTION))
    )


def record_script() -> str:
    """The record script with the constants of ``core.windows`` and the packed layouts."""
    return formatted(_RECORD)


def label_script() -> str:
    return formatted(_LABEL)
