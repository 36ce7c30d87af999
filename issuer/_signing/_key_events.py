"""Key events on Redis so verifiers drop a revoked key at once, when the key store does not send them."""

from __future__ import annotations

import functools
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from keys import KEY_EVENTS_CHANNEL, KeyEvent, KeyRing, idempotent, key_events

log = logging.getLogger("issuer.key_events")


class KeyEvents:
    """Publishes `key_events(old, new)`; the Redis key store publishes its own, the file store does not."""

    def __init__(self, client: aioredis.Redis | None, *, store_publishes: bool) -> None:
        # Without Redis there is no channel; with a Redis key store its commit already published.
        self._client = None if store_publishes else client

    async def changed(self, old: KeyRing, new: KeyRing) -> list[KeyEvent]:
        """The events between two rings, published when this issuer is the one to tell."""
        events = key_events(old, new)
        if self._client is None:
            return events
        client = self._client
        for event in events:
            message = event.encode()
            try:
                # Safe to send twice: a verifier told twice drops (or refetches) a key once.
                await idempotent(client, functools.partial(client.publish, KEY_EVENTS_CHANNEL, message))
            except RedisError as exc:
                # Verifiers still drop the key at their next JWKS refresh; the change itself is stored.
                log.warning("could not publish key event %s: %s", event.type, type(exc).__name__)
        return events
