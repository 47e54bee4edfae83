"""The Redis store's server-side scripts (Lua), their constants formatted from
``core.windows`` so the windows are defined once.

Keys (``{k}`` a ``core.windows.id_key``): ``fraud:c:{k}`` a customer's events (sorted set,
score = time, member = id key, unit separator, cents); ``fraud:m:{k}`` a terminal's events
and ``fraud:f:{k}`` those labelled fraud (score = time, member = id key); ``fraud:tx:{k}`` a
transaction's record (hash: ``a`` the aggregates it was answered with, ``f`` its label,
``fk`` its terminal's fraud key, ``t`` its time); ``fraud:latest`` the latest event time.

``record`` takes a request's transactions in order and, for each, in one step on the server:
answers a replay from its record, or refuses it as too old (stopping there), or adds it to
its customer and terminal, reads the aggregates exactly as ``core.windows`` does
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
local latest = tonumber(redis.call('GET', KEYS[1]) or '0')
local out = {}
local n = (#ARGV - 2) / 3
for i = 0, n - 1 do
  local ck, tk, fk, xk = KEYS[2 + 4 * i], KEYS[3 + 4 * i], KEYS[4 + 4 * i], KEYS[5 + 4 * i]
  local id, t, cents = ARGV[3 + 3 * i], tonumber(ARGV[4 + 3 * i]), ARGV[5 + 3 * i]
  local seen = redis.call('HGET', xk, 'a')
  if seen then
    out[#out + 1] = '1:' .. seen
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
    redis.call('HSET', xk, 'a', a, 'f', '0', 'fk', fk, 't', f(t))
    redis.call('EXPIRE', xk, tx_keep)
    local last = tonumber(redis.call('ZRANGE', ck, -1, -1, 'WITHSCORES')[2])
    redis.call('ZREMRANGEBYSCORE', ck, '-inf', '(' .. f(last - c_keep))
    last = tonumber(redis.call('ZRANGE', tk, -1, -1, 'WITHSCORES')[2])
    redis.call('ZREMRANGEBYSCORE', tk, '-inf', '(' .. f(last - t_keep))
    redis.call('ZREMRANGEBYSCORE', fk, '-inf', '(' .. f(last - t_keep))
    redis.call('EXPIRE', ck, c_keep)
    redis.call('EXPIRE', tk, t_keep)
    if t > latest then latest = t end
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
