"""The Redis store's server-side scripts (Lua), their constants formatted from
``core.windows`` so the windows are defined once.

Keys (``{k}`` a ``core.windows.id_key``): ``fraud:c:{k}`` a customer's events (sorted set,
score = time, member = id key, unit separator, cents); ``fraud:m:{k}`` a terminal's events
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
(``CustomerWindows.read``, ``TerminalWindows.read``), drops events past retention and sets
the keys' expiry. The script touches keys it computes from a transaction's record only in
``label``; the deployment runs Redis with cluster mode disabled.
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
  local id, t, cents = ARGV[3 + 3 * i], tonumber(ARGV[4 + 3 * i]), ARGV[5 + 3 * i]
  local answered = seen[i] or done[id]  -- done: an id sent earlier in the request
  if answered then
    done[id] = answered
    out[#out + 1] = '1:' .. answered
  elseif t < latest - skew and not backfill then
    redis.call('SET', KEYS[1], f(latest))
    return {'old', tostring(i), f(latest), out}
  else
    local mine = id .. '\\31' .. cents
    redis.call('ZADD', ck, t, mine)
    redis.call('ZADD', tk, t, id)
    local c, s = {0, 0, 0}, {0, 0, 0}
    -- sorted by (time, member bytes): the events at time t up to this one's member are the
    -- ones whose id key is at most this one's (not Lua's <=, which follows the locale)
    local passed = false
    local evs = redis.call('ZRANGEBYSCORE', ck, '(' .. f(t - CW[3]), f(t), 'WITHSCORES')
    for j = 1, #evs, 2 do
      local m, sc = evs[j], tonumber(evs[j + 1])
      if sc < t or not passed then
        local v = tonumber(string.sub(m, string.find(m, '\\31', 1, true) + 1))
        for w = 1, 3 do
          if sc > t - CW[w] then c[w] = c[w] + 1; s[w] = s[w] + v end
        end
      end
      if m == mine then passed = true end
    end
    local top = t - DELAY
    local agg = {}
    for w = 1, 3 do agg[#agg + 1] = f(c[w]); agg[#agg + 1] = f(s[w]) end
    for w = 1, 3 do
      agg[#agg + 1] = f(redis.call('ZCOUNT', tk, '(' .. f(top - TW[w]), f(top)))
      agg[#agg + 1] = f(redis.call('ZCOUNT', fk, '(' .. f(top - TW[w]), f(top)))
    end
    local a = table.concat(agg, ',')
    redis.call('HSET', xk, 'a', a, 'f', '0', 'fk', fk, 't', f(t), 'p', prints[i])
    redis.call('EXPIRE', xk, tx_keep)
    local last = tonumber(redis.call('ZRANGE', ck, -1, -1, 'WITHSCORES')[2])
    redis.call('ZREMRANGEBYSCORE', ck, '-inf', '(' .. f(last - c_keep))
    last = tonumber(redis.call('ZRANGE', tk, -1, -1, 'WITHSCORES')[2])
    redis.call('ZREMRANGEBYSCORE', tk, '-inf', '(' .. f(last - t_keep))
    redis.call('ZREMRANGEBYSCORE', fk, '-inf', '(' .. f(last - t_keep))
    redis.call('EXPIRE', ck, c_keep)
    redis.call('EXPIRE', tk, t_keep)
    if t > latest then latest = t end
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
    )
