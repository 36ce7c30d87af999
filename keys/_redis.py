"""The Redis client of the services, and the one rule for sending a command again after a dropped connection.

When Redis restarts, every idle connection in a client's pool is dead, and the first command on each fails
(redis-py notices a closed connection only when the event loop has already seen it close). Without a retry
that command's request answers 503 although Redis is back. But redis-py's own `Retry` resends *any* command,
and a client cannot tell a connection that was already dead from one that dropped after Redis ran the
command and before its answer arrived: resending a refresh-token rotation would then look like reuse and end
the caller's session, resending a spending reservation would count a payment twice. So the client retries
nothing by itself (`redis_client`), and each command goes out in one of two ways:

- `idempotent(command)`: a command whose second sending changes nothing and answers the same (a read, a
  write of fixed values, `SET NX GET` of a value unique to the call, a script written to recognise its own
  first run) is sent once more when its connection dropped.
- `exactly_once(client, command)`: any other state change is sent once, on a connection proved alive just
  before by a `PING` (itself sent the idempotent way): a dead connection is replaced before the command
  was ever written, so its first attempt provably did not happen. A connection that drops during the
  command itself is an outage for the caller (fail closed), never a second sending.

A timeout is never retried: a command that timed out may well have run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

T = TypeVar("T")


def redis_client(url: str) -> aioredis.Redis:
    """A client for `url` that sends every command once: the callers choose `idempotent` or `exactly_once`."""
    # Explicit: `Redis(...)` (not `from_url`) would otherwise retry every command up to ten times.
    return aioredis.Redis.from_url(url, retry=Retry(NoBackoff(), 0))


async def idempotent(client: aioredis.Redis, command: Callable[[], Awaitable[T]]) -> T:
    """`command()`, sent once more on a fresh connection if its connection dropped (safe to send twice)."""
    try:
        return await command()
    except RedisConnectionError:
        # One dead connection means Redis went away: its idle neighbours in the pool are dead too, and are
        # dropped now (they reconnect on their next use) rather than costing one failed command each.
        await client.connection_pool.disconnect(inuse_connections=False)
        return await command()


async def exactly_once(client: aioredis.Redis, command: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    """`command(pinned)` sent once, on a connection of `client` that answered a `PING` just before."""
    async with client.client() as pinned:
        await idempotent(client, pinned.ping)
        return await command(pinned)
