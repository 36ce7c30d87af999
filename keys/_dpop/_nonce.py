"""Server nonces for DPoP proofs (RFC 9449 §8, §9), the same on every replica of one service.

A nonce is a random value per time window, created by whichever replica needs it first: in process memory
for one process, in Redis (`SET NX`) for replicas, so no replica needs a shared secret. A nonce is accepted
during its window and the next one, so it lives between one and two windows; every answer carries the
current nonce, so a client that talks at least once per window never meets a `use_dpop_nonce` challenge.
"""

from __future__ import annotations

import hmac
import math
import secrets
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from keys._clock import wall_clock
from keys._errors import ReplayUnavailable
from keys._redis import idempotent

NONCE_WINDOW = 300
"""Seconds per nonce window; read tokens are refreshed every 240 s, within one window of the last answer."""
DPOP_NONCE_MAX_LENGTH = 64
"""The longest nonce a proof may carry, and a client keeps: ours are 22 characters."""


class NonceSource(Protocol):
    """The nonces one service hands out and accepts."""

    async def current(self) -> str:
        """The nonce of the current window (for a `DPoP-Nonce` header)."""
        ...

    async def accepts(self, nonce: str) -> bool:
        """True for the current window's nonce and the previous one's; `ReplayUnavailable` when unsure."""
        ...


def _equal(known: str | None, nonce: str) -> bool:
    return bool(known) and hmac.compare_digest(str(known).encode(), nonce.encode())


class _Windows:
    """Nonces of recent windows, kept by the window number."""

    def __init__(self, clock: Callable[[], float], window: int) -> None:
        if window <= 0:
            raise ValueError("the nonce window must be positive")
        self.clock = clock
        self.window = window
        self.known: dict[int, str] = {}

    def number(self) -> int:
        return math.floor(self.clock() / self.window)

    def remember(self, number: int, nonce: str) -> str:
        self.known = {n: v for n, v in self.known.items() if n >= number - 1}
        self.known[number] = nonce
        return nonce


class MemoryNonces:
    """Nonces of one process."""

    def __init__(self, *, clock: Callable[[], float] = wall_clock, window: int = NONCE_WINDOW) -> None:
        self._windows = _Windows(clock, window)

    async def current(self) -> str:
        number = self._windows.number()
        nonce = self._windows.known.get(number)
        return nonce if nonce is not None else self._windows.remember(number, secrets.token_urlsafe(16))

    async def accepts(self, nonce: str) -> bool:
        number = self._windows.number()
        await self.current()
        known = self._windows.known
        return _equal(known.get(number), nonce) or _equal(known.get(number - 1), nonce)


class RedisNonces:
    """Nonces shared by the replicas of one service through Redis; each replica asks once per window."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        clock: Callable[[], float] = wall_clock,
        window: int = NONCE_WINDOW,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._windows = _Windows(clock, window)

    async def _nonce(self, number: int) -> str:
        """The nonce of window `number`; "" when no replica made one (a past window nobody asked in)."""
        known = self._windows.known.get(number)
        if known is not None:
            return known
        key = f"{self._prefix}:{number}"
        current = number == self._windows.number()
        try:
            if current:
                # The first replica to need this window's nonce sets it; the others read the winner's. Both
                # are safe to send twice: a second SET NX changes nothing.
                nonce = secrets.token_urlsafe(16)
                ttl = 3 * self._windows.window
                await idempotent(self._client, lambda: self._client.set(key, nonce, nx=True, ex=ttl))
            value = await idempotent(self._client, lambda: self._client.get(key))
        except RedisError as exc:
            raise ReplayUnavailable(f"the nonce store cannot answer ({type(exc).__name__})") from None
        if value is None:
            if current:  # gone between SET and GET: Redis lost it (flushed, restarted)
                raise ReplayUnavailable("the nonce store lost the current nonce")
            # Remembered as none, so that a stale nonce costs one lookup per window, not one per request.
            return self._windows.remember(number, "")
        return self._windows.remember(number, value.decode() if isinstance(value, bytes) else str(value))

    async def current(self) -> str:
        return await self._nonce(self._windows.number())

    async def accepts(self, nonce: str) -> bool:
        number = self._windows.number()
        return _equal(await self._nonce(number), nonce) or _equal(await self._nonce(number - 1), nonce)
