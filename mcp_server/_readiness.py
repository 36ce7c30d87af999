"""`GET /readyz`: 200 when the server can serve (issuer keys usable, database and Redis answering), else 503.

`/healthz` stays a liveness probe: a server waiting for its issuer is alive but not ready.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio.to_thread
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse

from keys import idempotent

_PROBE_TIMEOUT = 2.0


class Readiness:
    """Checks the three things a tool call needs, cheapest first; the first that fails is the reason."""

    def __init__(
        self, *, keys_usable: Callable[[], bool], engine: Engine, redis: aioredis.Redis | None
    ) -> None:
        self._keys_usable = keys_usable
        self._engine = engine
        self._redis = redis

    async def reason(self) -> str | None:
        """Why the server is not ready, or None."""
        if not self._keys_usable():
            return "jwks_unavailable"
        try:
            with anyio.fail_after(_PROBE_TIMEOUT):
                await anyio.to_thread.run_sync(self._ping_database, abandon_on_cancel=True)
        except (SQLAlchemyError, TimeoutError):
            return "database_unavailable"
        if self._redis is not None:
            try:
                async with asyncio.timeout(_PROBE_TIMEOUT):
                    await idempotent(self._redis, self._redis.ping)
            except (RedisError, OSError, TimeoutError):
                return "redis_unavailable"
        return None

    async def endpoint(self, _request: Request) -> JSONResponse:
        """`GET /readyz`."""
        reason = await self.reason()
        if reason is not None:
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ready"})

    def _ping_database(self) -> None:
        with self._engine.connect() as connection:
            connection.execute(text("SELECT 1"))
