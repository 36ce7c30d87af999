"""Key events over Redis pub/sub: a key revoked at the issuer is dropped from the JWKS cache at once.

Channel `keys.KEY_EVENTS_CHANNEL` ("voicebank:key-events"), messages `keys.KeyEvent`. A revocation drops
its kid at once. A rotation whose new active kid the cache does not hold yet makes it refetch the JWKS at
once: a forced rotation (or the revocation of the active key) may promote a key published after this
replica's last fetch, and the unknown-kid refetch is rate-limited, so without this the new key's tokens
could be refused for seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from keys import KEY_EVENTS_CHANNEL, KeyEvent, KeysUnavailable

_log = logging.getLogger("voicebank.mcp.key_events")


class KeyDropper(Protocol):
    """What a key event acts on: the JWKS cache."""

    @property
    def kids(self) -> frozenset[str]:
        """The kids the cache holds now."""
        ...

    def drop(self, kid: str) -> None:
        """Forget the key `kid` at once."""
        ...

    async def refresh(self) -> None:
        """Fetch the JWKS now (not rate-limited); raise KeysUnavailable if that fails."""
        ...


class KeyEventSubscriber:
    """Listens for key events: drops revoked kids, fetches unknown rotated ones; reconnects after errors."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: KeyDropper,
        *,
        channel: str = KEY_EVENTS_CHANNEL,
        retry_delay: float = 1.0,
        max_retry_delay: float = 30.0,
        fetch_attempts: int = 30,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self._keys = keys
        self._channel = channel
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._fetch_attempts = max(1, fetch_attempts)
        self._sleep = sleep
        self._failures = 0  # consecutive failed attempts to (re)subscribe
        self.subscribed = asyncio.Event()
        self.dropped: deque[str] = deque(maxlen=1000)
        self.learned: deque[str] = deque(maxlen=1000)
        self._changed = asyncio.Condition()
        self._fetches: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Listen until cancelled; while Redis is down, retry with exponential backoff (capped)."""
        try:
            while True:
                try:
                    await self._listen()
                except (RedisError, OSError) as exc:
                    self.subscribed.clear()
                    self._failures += 1
                    delay = min(self._retry_delay * 2 ** min(self._failures - 1, 32), self._max_retry_delay)
                    _log.warning(
                        "key events: redis error (%s); subscribing again in %g s", type(exc).__name__, delay
                    )
                    await self._sleep(delay)
        finally:
            for task in self._fetches:
                task.cancel()
            await asyncio.gather(*self._fetches, return_exceptions=True)

    async def _listen(self) -> None:
        async with self._client.pubsub() as pubsub:
            await pubsub.subscribe(self._channel)
            async for message in pubsub.listen():
                if message["type"] == "subscribe":
                    if self._failures:
                        _log.warning("key events: subscribed again after %d failed attempts", self._failures)
                        self._failures = 0
                    self.subscribed.set()
                elif message["type"] == "message":
                    event = KeyEvent.decode(message["data"])
                    if event is None:
                        continue  # not a key event: nothing to act on
                    if event.type == "revoked":
                        await self._drop(event.kid)
                    else:
                        self._learn(event.kid)

    async def _drop(self, kid: str) -> None:
        self._keys.drop(kid)
        _log.info("key events: dropped revoked kid %s", kid)
        async with self._changed:
            self.dropped.append(kid)
            self._changed.notify_all()

    def _learn(self, kid: str) -> None:
        if kid in self._keys.kids:
            return
        # In the background: a slow issuer must not hold up the revocations queued behind this event.
        task = asyncio.create_task(self._fetch(kid), name="voicebank-key-events-fetch")
        self._fetches.add(task)
        task.add_done_callback(self._fetches.discard)

    async def _fetch(self, kid: str) -> None:
        # Retried while the issuer is unreachable (a replica restarting): the first token signed with
        # the new key may come right after it is back, when the unknown-kid refetch is still rate-limited.
        for attempt in range(1, self._fetch_attempts + 1):
            try:
                await self._keys.refresh()
                break
            except KeysUnavailable:
                _log.warning("key events: JWKS refetch for rotated kid %s failed (try %d)", kid, attempt)
                if attempt == self._fetch_attempts:
                    return
                await self._sleep(self._retry_delay)
        _log.info("key events: fetched the JWKS for rotated kid %s", kid)
        async with self._changed:
            self.learned.append(kid)
            self._changed.notify_all()

    async def wait_learned(self, kid: str) -> None:
        """Return once the JWKS was refetched for the rotated `kid` (for tests and readiness checks)."""
        async with self._changed:
            await self._changed.wait_for(lambda: kid in self.learned)

    async def wait_dropped(self, kid: str) -> None:
        """Return once `kid` has been dropped (for tests and readiness checks)."""
        async with self._changed:
            await self._changed.wait_for(lambda: kid in self.dropped)
