"""Single-use token ids: a `jti` is spent once and remembered until the token expires."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError


class ReplayStoreUnavailable(Exception):
    """The shared replay store cannot answer; callers must refuse (fail closed)."""

    code = "replay_store_unavailable"


class ReplayStore(Protocol):
    """Where spent `jti`s live."""

    async def spend(self, jti: str, exp: float) -> bool:
        """True the first time `jti` is spent, False on every later try before `exp`."""
        ...


class MemoryReplayStore:
    """In-process replay store for one replica."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, max_entries: int = 100_000, leeway: int = 60
    ) -> None:
        self._clock = clock
        self._max = max_entries
        self._leeway = leeway
        self._spent: dict[str, float] = {}
        self._lock = threading.Lock()

    async def spend(self, jti: str, exp: float) -> bool:
        """Remember `jti` until `exp` plus the verifier's leeway."""
        now = self._clock()
        with self._lock:
            if len(self._spent) >= self._max:
                self._spent = {k: v for k, v in self._spent.items() if v > now}
                if len(self._spent) >= self._max:
                    # Refuse rather than forget a live jti.
                    raise ReplayStoreUnavailable("replay store full")
            known = self._spent.get(jti)
            if known is not None and known > now:
                return False
            self._spent[jti] = exp + self._leeway
            return True


class RedisReplayStore:
    """Replay store shared by every replica: `SET NX` with the token's remaining lifetime."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        clock: Callable[[], float] = time.time,
        prefix: str = "voicebank:mcp:jti:",
        leeway: int = 60,
    ) -> None:
        self._client = client
        self._clock = clock
        self._prefix = prefix
        self._leeway = leeway

    async def spend(self, jti: str, exp: float) -> bool:
        """Spend `jti` atomically across replicas."""
        # Keep it through the verifier's leeway too, while the token could still be accepted.
        ttl = max(1, math.ceil(exp - self._clock()) + self._leeway)
        try:
            created = await self._client.set(self._prefix + jti, b"1", nx=True, ex=ttl)
        except RedisError as exc:
            raise ReplayStoreUnavailable("redis unavailable") from exc
        return bool(created)
