"""Regression (found by tests/e2e): a key promoted after the last JWKS fetch was refused for seconds.

A forced rotation, or the revocation of the active key, promotes a key that may have been published after
the MCP server's last JWKS fetch. The unknown-kid refetch is rate-limited (once per 5 s), so the new key's
tokens were answered 401 for up to 5 s on every replica that fetched recently - right after an emergency
revocation, when it matters most. The issuer publishes `{"type": "rotated", "kid": <new active>}` on the
key-events channel in the same Redis transaction; the MCP server now refetches on it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from keys import KEY_EVENTS_CHANNEL, JWKSCache, KeyPair, generate_key
from mcp_server import KeyEventSubscriber, McpSettings, build_app_from_settings
from tests.support.clock import FakeClock
from tests.support.issuer import ISSUER, RESOURCE
from tests.support.lifespan import running
from tests.support.mcp import Mint, http_client, post, rpc


class JwksServer:
    """A stand-in issuer serving a JWKS that the test changes, and counting fetches."""

    def __init__(self, key: KeyPair) -> None:
        self.keys = [key.public_jwk()]
        self.fetches = 0
        self.down_for = 0  # answer this many fetches with 503 (a replica restarting)
        self.app = Starlette(routes=[Route("/.well-known/jwks.json", self.jwks)])

    async def jwks(self, _request: Request) -> JSONResponse:
        self.fetches += 1
        if self.down_for > 0:
            self.down_for -= 1
            return JSONResponse({}, status_code=503)
        return JSONResponse({"keys": self.keys}, headers={"cache-control": "public, max-age=300"})


async def test_regression_a_rotated_event_refetches_the_jwks_for_a_key_published_after_the_last_fetch(
    tmp_path: Path, redis_url: str, signing_key: KeyPair, engine: Engine, clock: FakeClock, mint: Mint
) -> None:
    settings = McpSettings(
        mcp_issuer_url=ISSUER, mcp_resource_url=RESOURCE, voicebank_state=tmp_path, redis_url=redis_url
    )
    issuer = JwksServer(signing_key)
    promoted = generate_key("ES256")
    issuer_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=issuer.app), base_url=ISSUER)
    app = build_app_from_settings(settings, clock=clock, http_client=issuer_client, engine=engine)
    publisher = aioredis.Redis.from_url(redis_url)
    async with issuer_client, running(app), http_client(app) as http:
        subscriber = app.state.key_events
        await asyncio.wait_for(subscriber.subscribed.wait(), 10)
        assert issuer.fetches == 1  # at startup; the clock never moves, so no unknown-kid refetch is allowed
        # The issuer promotes a key this replica has never fetched, and says so on the channel.
        issuer.keys = [promoted.public_jwk()]
        await publisher.publish(KEY_EVENTS_CHANNEL, json.dumps({"type": "rotated", "kid": promoted.kid}))
        await asyncio.wait_for(subscriber.wait_learned(promoted.kid), 10)
        response = await post(http, mint(key=promoted), rpc("list_payees", {}))
        # A rotation to a kid it already holds costs no fetch.
        await publisher.publish(KEY_EVENTS_CHANNEL, json.dumps({"type": "rotated", "kid": promoted.kid}))
        await publisher.publish(KEY_EVENTS_CHANNEL, json.dumps({"type": "revoked", "kid": "sentinel"}))
        await asyncio.wait_for(subscriber.wait_dropped("sentinel"), 10)
    await publisher.aclose()
    assert response.status_code == 200
    assert issuer.fetches == 2


async def test_regression_a_failed_refetch_on_a_rotated_event_is_retried_until_the_issuer_answers(
    redis_url: str, signing_key: KeyPair, clock: FakeClock
) -> None:
    issuer = JwksServer(signing_key)
    promoted = generate_key("ES256")
    redis = aioredis.Redis.from_url(redis_url)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=issuer.app), base_url=ISSUER) as link:
        cache = JWKSCache(f"{ISSUER}/.well-known/jwks.json", link, clock=clock)
        await cache.refresh()
        subscriber = KeyEventSubscriber(redis, cache, retry_delay=0)
        task = asyncio.create_task(subscriber.run())
        try:
            await asyncio.wait_for(subscriber.subscribed.wait(), 10)
            issuer.keys = [promoted.public_jwk()]
            issuer.down_for = 2
            await redis.publish(KEY_EVENTS_CHANNEL, json.dumps({"type": "rotated", "kid": promoted.kid}))
            await asyncio.wait_for(subscriber.wait_learned(promoted.kid), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await cache.aclose()
            await redis.aclose()
    assert promoted.kid in cache.kids
    assert issuer.fetches == 1 + 3  # startup, then two refused tries and the one that worked
