"""Regression: with Redis down, the key-event listener logged a warning every second, as long as it lasted.

It now waits 1, 2, 4 ... seconds between attempts (capped at 30 s) and logs the recovery once. The Redis
server is real and really stopped; only the listener's sleep is injected, so the test never waits.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from keys import KEY_EVENTS_CHANNEL, JWKSCache, generate_key
from mcp_server import KeyEventSubscriber
from tests.support.servers import RedisServer

ISSUER = "http://issuer.test"
FAILURES_BEFORE_RESTART = 8


@pytest.fixture
async def cache() -> AsyncIterator[JWKSCache]:
    keys = [generate_key("ES256").public_jwk(), generate_key("ES256").public_jwk()]

    async def jwks(_request: Request) -> JSONResponse:
        return JSONResponse({"keys": keys}, headers={"cache-control": "public, max-age=300"})

    app = Starlette(routes=[Route("/.well-known/jwks.json", jwks)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as link:
        cache = JWKSCache(f"{ISSUER}/.well-known/jwks.json", link, clock=lambda: 1_800_000_000.0)
        await cache.refresh()
        yield cache
        await cache.aclose()


async def test_regression_redis_down_backs_off_exponentially_and_logs_the_recovery_once(
    tmp_path: Path, cache: JWKSCache, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voicebank.mcp.key_events")
    server = RedisServer(tmp_path)
    server.start()
    delays: list[float] = []
    stopped, restarted = asyncio.Event(), asyncio.Event()

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == FAILURES_BEFORE_RESTART:
            await stopped.wait()  # the failures begin while `stop` still waits for the process to end
            await asyncio.to_thread(server.start)  # Redis is back, on the same port
            restarted.set()
        await asyncio.sleep(0)

    # No client-side retries: each attempt of the listener is one attempt.
    client = aioredis.Redis.from_url(server.url, retry=Retry(NoBackoff(), 0))
    subscriber = KeyEventSubscriber(client, cache, sleep=sleep)
    task = asyncio.create_task(subscriber.run())
    try:
        await asyncio.wait_for(subscriber.subscribed.wait(), 30)
        await asyncio.to_thread(server.stop)
        stopped.set()
        await asyncio.wait_for(restarted.wait(), 60)
        await asyncio.wait_for(subscriber.subscribed.wait(), 30)
        # It listens again: a revocation published now reaches it.
        kid = next(iter(cache.kids))
        await client.publish(KEY_EVENTS_CHANNEL, json.dumps({"type": "revoked", "kid": kid}))
        await asyncio.wait_for(subscriber.wait_dropped(kid), 30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
        server.stop()
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    messages = [r.getMessage() for r in caplog.records if r.name == "voicebank.mcp.key_events"]
    retries = [m for m in messages if "subscribing again in" in m]
    assert len(retries) == FAILURES_BEFORE_RESTART  # one line per attempt, no longer one per second
    assert retries[0].endswith("subscribing again in 1 s")
    assert retries[-1].endswith("subscribing again in 30 s")
    recovered = [m for m in messages if "subscribed again" in m]
    assert recovered == [f"key events: subscribed again after {FAILURES_BEFORE_RESTART} failed attempts"]
    assert kid not in cache.kids
