"""Key events over Redis pub/sub: a key revoked at the issuer is dropped from the JWKS cache at once.

Channel `keys.KEY_EVENTS_CHANNEL` ("voicebank:key-events"); a revocation is JSON
`{"type": "revoked", "kid": "<kid>"}`. Other types (such as "rotated") are ignored here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from keys import KEY_EVENTS_CHANNEL

_log = logging.getLogger("voicebank.mcp.key_events")


class KeyDropper(Protocol):
    """What a key event acts on: the JWKS cache."""

    def drop(self, kid: str) -> None:
        """Forget the key `kid` at once."""
        ...


def parse_key_event(data: bytes | str) -> str | None:
    """The kid of a revocation event, or None for anything else."""
    try:
        event: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(event, dict) and event.get("type") == "revoked":
        kid = event.get("kid")
        if isinstance(kid, str) and 0 < len(kid) <= 256:
            return kid
    return None


class KeyEventSubscriber:
    """Listens on the key-events channel and drops revoked kids; reconnects after Redis errors."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: KeyDropper,
        *,
        channel: str = KEY_EVENTS_CHANNEL,
        retry_delay: float = 1.0,
    ) -> None:
        self._client = client
        self._keys = keys
        self._channel = channel
        self._retry_delay = retry_delay
        self.subscribed = asyncio.Event()
        self.dropped: deque[str] = deque(maxlen=1000)
        self._changed = asyncio.Condition()

    async def run(self) -> None:
        """Listen until cancelled."""
        while True:
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                _log.warning("key events: redis error (%s); resubscribing", type(exc).__name__)
                await asyncio.sleep(self._retry_delay)

    async def _listen(self) -> None:
        async with self._client.pubsub() as pubsub:
            await pubsub.subscribe(self._channel)
            async for message in pubsub.listen():
                if message["type"] == "subscribe":
                    self.subscribed.set()
                elif message["type"] == "message":
                    kid = parse_key_event(message["data"])
                    if kid is not None:
                        await self._drop(kid)

    async def _drop(self, kid: str) -> None:
        self._keys.drop(kid)
        _log.info("key events: dropped revoked kid %s", kid)
        async with self._changed:
            self.dropped.append(kid)
            self._changed.notify_all()

    async def wait_dropped(self, kid: str) -> None:
        """Return once `kid` has been dropped (for tests and readiness checks)."""
        async with self._changed:
            await self._changed.wait_for(lambda: kid in self.dropped)
