"""What each voice session has authorized so far, in cents, so the approval threshold counts the whole call.

A movement below the threshold is reserved atomically (check and add in one step, across replicas on
Redis), so concurrent or split payments cannot slip under the threshold together; a movement the user
approved out of band is added unconditionally.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis

from keys import exactly_once


class SpendingLedger(Protocol):
    """Session totals; `reserve` is atomic: of concurrent reservations none takes the total over the limit."""

    async def reserve(self, sid: str, cents: int, *, limit: int, expires_at: float) -> bool:
        """Add `cents` to the session's total when the new total stays within `limit`; False otherwise."""
        ...

    async def release(self, sid: str, cents: int) -> None:
        """Take back a reservation whose token was not issued after all."""
        ...

    async def add(self, sid: str, cents: int, *, expires_at: float) -> None:
        """Count an approved movement, whatever the total."""
        ...


class MemorySpendingLedger:
    """Session totals of one issuer process."""

    def __init__(self, *, clock: Callable[[], float] = time.time, max_sessions: int = 100_000) -> None:
        self._clock = clock
        self._max = max_sessions
        self._totals: dict[str, tuple[int, float]] = {}  # sid -> (cents, expires at)
        self._lock = threading.Lock()

    def _total(self, sid: str, now: float) -> int:
        entry = self._totals.get(sid)
        return entry[0] if entry is not None and entry[1] > now else 0

    def _set(self, sid: str, cents: int, expires_at: float, now: float) -> None:
        if sid not in self._totals and len(self._totals) >= self._max:
            self._totals = {k: v for k, v in self._totals.items() if v[1] > now}
        previous = self._totals.get(sid)
        keep = max(expires_at, previous[1]) if previous is not None else expires_at
        self._totals[sid] = (cents, keep)

    async def reserve(self, sid: str, cents: int, *, limit: int, expires_at: float) -> bool:
        now = self._clock()
        with self._lock:
            total = self._total(sid, now) + cents
            if total > limit:
                return False
            self._set(sid, total, expires_at, now)
            return True

    async def release(self, sid: str, cents: int) -> None:
        now = self._clock()
        with self._lock:
            if sid in self._totals:
                self._set(sid, max(0, self._total(sid, now) - cents), self._totals[sid][1], now)

    async def add(self, sid: str, cents: int, *, expires_at: float) -> None:
        now = self._clock()
        with self._lock:
            self._set(sid, self._total(sid, now) + cents, expires_at, now)


# KEYS[1] the session's total. ARGV: cents, limit (-1: none), ttl. Answers 1 when added, 0 when refused.
_ADD = """
local total = tonumber(redis.call('GET', KEYS[1]) or '0') + tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if limit >= 0 and total > limit then return 0 end
redis.call('SET', KEYS[1], string.format('%d', total))
local ttl = tonumber(ARGV[3])
if redis.call('TTL', KEYS[1]) < ttl then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""
# KEYS[1] the session's total. ARGV: cents. Never below zero, never creates the key.
_RELEASE = """
local total = tonumber(redis.call('GET', KEYS[1]) or '-1')
if total < 0 then return 0 end
redis.call('SET', KEYS[1], string.format('%d', math.max(0, total - tonumber(ARGV[1]))), 'KEEPTTL')
return 1
"""


class RedisSpendingLedger:
    """Session totals shared by issuer replicas: one Lua script checks and adds atomically.

    Adding twice counts a payment twice, so each script is sent `keys.exactly_once` (on a connection proved
    alive just before), never resent after a dropped connection.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "voicebank:spent",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._add = client.register_script(_ADD)
        self._release = client.register_script(_RELEASE)

    def _key(self, sid: str) -> str:
        # Hashed so a client-chosen session id cannot shape Redis keys.
        return f"{self._prefix}:{hashlib.sha256(sid.encode()).hexdigest()}"

    def _ttl(self, expires_at: float) -> int:
        return max(1, math.ceil(expires_at - self._clock()))

    async def reserve(self, sid: str, cents: int, *, limit: int, expires_at: float) -> bool:
        args = [cents, limit, self._ttl(expires_at)]
        added = await exactly_once(
            self._client, lambda c: self._add(keys=[self._key(sid)], args=args, client=c)
        )
        return bool(added)

    async def release(self, sid: str, cents: int) -> None:
        await exactly_once(
            self._client, lambda c: self._release(keys=[self._key(sid)], args=[cents], client=c)
        )

    async def add(self, sid: str, cents: int, *, expires_at: float) -> None:
        args = [cents, -1, self._ttl(expires_at)]
        await exactly_once(self._client, lambda c: self._add(keys=[self._key(sid)], args=args, client=c))
