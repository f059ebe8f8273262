"""``RedisBreakerStore``: one circuit breaker state shared by every process."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from ragprod.resilience._shared import SharedStateMixin

__all__ = ["RedisBreakerStore", "Shared"]

# One script, four operations; every call is one atomic round trip.
# KEYS[1] = the breaker's hash. ARGV = op, now, kind ("c"/"t"), size, width,
# buckets, failure_rate, slow_rate, slow_enabled, min_calls, open_duration,
# half_open_calls, gen, payload, ttl.
_LUA = r"""
local key = KEYS[1]
local op, now = ARGV[1], tonumber(ARGV[2])
local kind, size, width, nb = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local fr, sr, slow_on = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9] == "1"
local min_calls, open_for, n = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local gen_arg, payload, ttl = tonumber(ARGV[13]), ARGV[14], tonumber(ARGV[15])

local h = redis.call("HMGET", key, "state", "gen", "open_until", "permits", "tc", "tf", "ts")
local state = h[1] or "closed"
local gen = tonumber(h[2]) or 0
local open_until = tonumber(h[3]) or 0
local permits = tonumber(h[4]) or 0
local tc, tf, ts = tonumber(h[5]) or 0, tonumber(h[6]) or 0, tonumber(h[7]) or 0
local changed, granted = 0, 0

local function tripped(c, f, s)
  if c <= 0 then return false end
  if f >= c * fr then return true end
  return slow_on and s >= c * sr
end

local function clear_window()
  redis.call("HDEL", key, "w")
  local fields = redis.call("HKEYS", key)
  for _, f in ipairs(fields) do
    if string.sub(f, 1, 2) == "t:" then redis.call("HDEL", key, f) end
  end
end

local function go(to)
  if to ~= state then changed = 1 end
  state = to
  gen = gen + 1
  if to == "open" then open_until = now + open_for end
  if to == "half_open" then permits = n; tc, tf, ts = 0, 0, 0 end
  if to == "closed" then clear_window() end
end

local function count(s, pat)
  return select(2, string.gsub(s, pat, ""))
end

if op == "sync" then
  if state == "closed" and gen_arg == gen and #payload > 0 then
    local c, f, s
    if kind == "c" then
      local w = (redis.call("HGET", key, "w") or "") .. payload
      if #w > size then w = string.sub(w, -size) end
      redis.call("HSET", key, "w", w)
      c, f, s = #w, count(w, "[13]"), count(w, "[23]")
    else
      local epoch = math.floor(now / width)
      local field = "t:" .. epoch
      local cur = redis.call("HGET", key, field)
      local bc, bf, bs = 0, 0, 0
      if cur then
        local a, b, d = string.match(cur, "(%d+) (%d+) (%d+)")
        bc, bf, bs = tonumber(a), tonumber(b), tonumber(d)
      end
      bc = bc + #payload
      bf = bf + count(payload, "[13]")
      bs = bs + count(payload, "[23]")
      redis.call("HSET", key, field, bc .. " " .. bf .. " " .. bs)
      c, f, s = 0, 0, 0
      local fields = redis.call("HKEYS", key)
      for _, fl in ipairs(fields) do
        if string.sub(fl, 1, 2) == "t:" then
          local e = tonumber(string.sub(fl, 3))
          if e <= epoch - nb then
            redis.call("HDEL", key, fl)
          else
            local v = redis.call("HGET", key, fl)
            local a, b, d = string.match(v, "(%d+) (%d+) (%d+)")
            c, f, s = c + tonumber(a), f + tonumber(b), s + tonumber(d)
          end
        end
      end
    end
    if c >= min_calls and tripped(c, f, s) then go("open") end
  end
elseif op == "acquire" then
  if state == "open" and now >= open_until then go("half_open") end
  if state == "half_open" then
    if permits > 0 then permits = permits - 1; granted = 1 end
  elseif state == "closed" or state == "disabled" then
    granted = 1
  end
elseif op == "finish" then
  if state == "half_open" and gen_arg == gen then
    if payload == "" then
      permits = permits + 1
    else
      local code = tonumber(payload)
      tc = tc + 1
      if code % 2 == 1 then tf = tf + 1 end
      if code >= 2 then ts = ts + 1 end
      if tc >= n then
        if tripped(tc, tf, ts) then go("open") else go("closed") end
      end
    end
  end
elseif op == "set" then
  go(payload)
end

redis.call("HSET", key, "state", state, "gen", gen, "open_until", tostring(open_until),
  "permits", permits, "tc", tc, "tf", tf, "ts", ts)
redis.call("EXPIRE", key, ttl)
local remaining = 0
if state == "open" then remaining = math.max(0, open_until - now) end
return {state, gen, tostring(remaining), changed, granted}
"""


@dataclass(frozen=True, slots=True)
class Shared:
    """The shared state of one breaker, as a store round trip returned it."""

    state: str
    gen: int
    open_remaining: float
    changed: bool = False


class RedisBreakerStore:
    """Share circuit breaker state and windows across processes through Redis.

    Pass it as ``CircuitBreaker(..., store=RedisBreakerStore(url))``; every
    breaker with the same ``name`` and ``prefix`` then shares one state
    machine, whatever process or host it runs in. Each operation is one Lua
    script run (one round trip, atomic):

    - CLOSED, success: no round trip. Outcomes are buffered locally (for a
      count window, only the last ``window_size`` are kept: older ones would
      slide out anyway) and flushed with the next failure, or with the sync
      made once per ``sync_interval``, which also picks up transitions made
      by other processes. So a failure costs one round trip, and successes
      cost one round trip per ``sync_interval`` per process, whatever the
      rate. A process starting up syncs before its first call.
    - OPEN: no round trip until the open period ends (its end is shared).
    - HALF_OPEN: admission and each trial's result are one round trip each;
      the script hands out exactly ``half_open_calls`` permits across all
      processes. A process refused a permit does not ask again for
      ``sync_interval``.

    Times in Redis come from ``clock`` (wall time by default, so hosts need
    NTP-synchronised clocks; skew shifts the open period by the skew). If
    Redis is unreachable or slow (``socket_timeout``), the breaker carries on
    with its own local state machine, counts
    ``ragprod_resilience_store_errors_total``, sets
    ``ragprod_resilience_store_degraded`` to 1, logs
    ``ragprod.resilience.store_unavailable`` (at most every 10 s), and tries
    the store again after ``retry_interval`` seconds.

    The round trips are blocking calls with a short timeout, also from async
    code (they are rare: failures, half-open trials and one sync per interval).

    Args:
        client_or_url: a ``redis.Redis`` client, or a ``redis://`` URL.
        prefix: key prefix; the key is ``prefix + breaker name``.
        sync_interval: seconds between background syncs on the success path.
        retry_interval: seconds to stay on local state after a Redis error.
        socket_timeout: timeout for a client built from a URL, in seconds.
        ttl: seconds an idle breaker's key lives in Redis.
        clock: wall-clock time shared by all processes.

    Example:
        >>> store = RedisBreakerStore("redis://127.0.0.1:6379/0", prefix="doc:breaker:")
        >>> breaker = CircuitBreaker("llm", store=store)  # doctest: +SKIP
    """

    def __init__(
        self,
        client_or_url: redis.Redis | str,
        *,
        prefix: str = "ragprod:breaker:",
        sync_interval: float = 0.01,
        retry_interval: float = 1.0,
        socket_timeout: float = 0.25,
        ttl: int = 7 * 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(client_or_url, str):
            client: redis.Redis = redis.Redis.from_url(
                client_or_url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
            )
        else:
            client = client_or_url
        self.client = client
        self.prefix = prefix
        self.sync_interval = sync_interval
        self.retry_interval = retry_interval
        self.ttl = ttl
        self._clock = clock
        self._script = client.register_script(_LUA)
        self._specs: dict[int, list[Any]] = {}

    def key(self, breaker: SharedStateMixin) -> str:
        """The Redis key holding ``breaker``'s shared state."""
        return self.prefix + breaker.name

    def _spec(self, breaker: SharedStateMixin) -> list[Any]:
        spec = self._specs.get(id(breaker))
        if spec is None:
            duration = breaker.window_duration
            spec = [
                "t" if duration else "c",
                breaker.window_size,
                repr(duration / 10) if duration else "1",
                10,
                repr(breaker.failure_rate_threshold),
                repr(breaker.slow_call_rate_threshold),
                "1" if breaker.slow_call_duration is not None else "0",
                breaker.minimum_calls,
                repr(breaker.open_duration),
                breaker.half_open_calls,
            ]
            self._specs[id(breaker)] = spec
        return spec

    def _run(
        self, breaker: SharedStateMixin, op: str, gen: int, payload: str
    ) -> tuple[Shared, bool]:
        args = [op, repr(self._clock()), *self._spec(breaker), gen, payload, self.ttl]
        state, g, remaining, changed, granted = self._script(keys=[self.key(breaker)], args=args)
        shared = Shared(
            state.decode() if isinstance(state, bytes) else str(state),
            int(g),
            float(remaining),
            bool(int(changed)),
        )
        return shared, bool(int(granted))

    def sync(self, breaker: SharedStateMixin, gen: int, outcomes: str) -> Shared:
        """Flush CLOSED-state outcomes (``"0"``-``"3"`` codes) and read the shared state."""
        return self._run(breaker, "sync", gen, outcomes)[0]

    def acquire(self, breaker: SharedStateMixin) -> tuple[bool, Shared]:
        """Ask for admission outside CLOSED (half-opens an expired OPEN state)."""
        shared, granted = self._run(breaker, "acquire", 0, "")
        return granted, shared

    def finish_trial(self, breaker: SharedStateMixin, gen: int, code: int | None) -> Shared:
        """Report a half-open trial's outcome code, or give its permit back (``None``)."""
        return self._run(breaker, "finish", gen, "" if code is None else str(code))[0]

    def set_state(self, breaker: SharedStateMixin, state: str) -> Shared:
        """Force the shared state (operator transitions)."""
        return self._run(breaker, "set", 0, state)[0]

    def __repr__(self) -> str:
        return f"RedisBreakerStore(prefix={self.prefix!r})"
