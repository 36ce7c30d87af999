"""Shared state over a real Redis: single-use transact tokens across replicas, key events, fail closed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from keys import KEY_EVENTS_CHANNEL, KeyPair, Verifier
from mcp_server import Bank, McpSettings, build_app_from_settings, create_app
from tests.support.clock import FakeClock
from tests.support.issuer import ISSUER, RESOURCE
from tests.support.lifespan import running
from tests.support.mcp import Mint, http_client, post, rpc


@pytest.fixture
def redis_settings(tmp_path: Path, redis_url: str) -> McpSettings:
    return McpSettings(
        mcp_issuer_url=ISSUER, mcp_resource_url=RESOURCE, voicebank_state=tmp_path, redis_url=redis_url
    )


@pytest.fixture
def payment(bank: Bank) -> dict[str, Any]:
    checking = bank.get_balance("alice", "checking")["accounts"][0]["account_id"]
    payee = bank.list_payees("alice")["payees"][0]["payee_id"]
    return {"from_account_id": checking, "payee_id": payee, "amount": "10.00", "idempotency_key": "r-1"}


async def test_a_spent_jti_stays_in_redis_for_the_token_lifetime_plus_the_leeway(
    redis_settings: McpSettings,
    redis_url: str,
    verifier: Verifier,
    engine: Engine,
    clock: FakeClock,
    mint: Mint,
    payment: dict[str, Any],
) -> None:
    app = create_app(redis_settings, verifier=verifier, engine=engine, clock=clock)
    async with running(app), http_client(app) as http:
        token = mint(scope="transact", bound=("make_payment", payment))
        assert (await post(http, token, rpc("make_payment", payment))).status_code == 200
    client = aioredis.Redis.from_url(redis_url)
    try:
        spent = [key async for key in client.scan_iter("voicebank:mcp:jti:*")]
        assert len(spent) == 1
        assert 60 < await client.ttl(spent[0]) <= 120  # the token's lifetime plus the verifier's leeway
    finally:
        await client.aclose()


async def test_a_transact_token_spent_on_one_replica_is_refused_on_another(
    redis_settings: McpSettings,
    verifier: Verifier,
    engine: Engine,
    clock: FakeClock,
    mint: Mint,
    bank: Bank,
    payment: dict[str, Any],
) -> None:
    first = create_app(redis_settings, verifier=verifier, engine=engine, clock=clock)
    second = create_app(redis_settings, verifier=verifier, engine=engine, clock=clock)
    token = mint(scope="transact", bound=("make_payment", payment))
    async with running(first), running(second), http_client(first) as a, http_client(second) as b:
        assert (await post(a, token, rpc("make_payment", payment))).status_code == 200
        again = await post(b, token, rpc("make_payment", payment))
        assert again.status_code == 401
    assert bank.get_balance("alice", "checking")["accounts"][0]["balance"] == "2440.13"


async def test_replay_store_down_fails_closed(
    redis_settings: McpSettings,
    redis_server: Any,
    verifier: Verifier,
    engine: Engine,
    clock: FakeClock,
    mint: Mint,
    bank: Bank,
    payment: dict[str, Any],
) -> None:
    app = create_app(redis_settings, verifier=verifier, engine=engine, clock=clock)
    async with running(app), http_client(app) as http:
        redis_server.stop()
        try:
            token = mint(scope="transact", bound=("make_payment", payment))
            response = await post(http, token, rpc("make_payment", payment))
            # Reads do not need the replay store.
            assert (await post(http, mint(), rpc("list_payees", {}))).status_code == 200
        finally:
            redis_server.start()
    assert response.status_code == 503
    # An outage, not a bad token (issue 10): "try again", never a 401 that would make the client refresh.
    assert response.json() == {"error": "temporarily_unavailable"}
    assert response.headers["retry-after"] == "2"
    assert "www-authenticate" not in response.headers
    assert bank.get_balance("alice", "checking")["accounts"][0]["balance"] == "2450.13"


async def test_regression_a_redis_restart_between_two_payments_is_not_a_503(
    redis_settings: McpSettings,
    redis_server: Any,
    verifier: Verifier,
    engine: Engine,
    clock: FakeClock,
    mint: Mint,
    bank: Bank,
    payment: dict[str, Any],
) -> None:
    # The first payment leaves an idle connection in the pool; Redis restarts; that connection is now dead.
    # It used to answer the next payment with 503 (no retry on a dropped connection); a dead connection is
    # replaced once instead, and an outage still fails closed (test above).
    app = create_app(redis_settings, verifier=verifier, engine=engine, clock=clock)
    second = payment | {"idempotency_key": "r-2"}
    async with running(app), http_client(app) as http:
        first = mint(scope="transact", bound=("make_payment", payment))
        assert (await post(http, first, rpc("make_payment", payment))).status_code == 200
        redis_server.restart()
        token = mint(scope="transact", bound=("make_payment", second))
        response = await post(http, token, rpc("make_payment", second))
        assert response.status_code == 200, response.text
        assert (await post(http, token, rpc("make_payment", second))).status_code == 401
    assert bank.get_balance("alice", "checking")["accounts"][0]["balance"] == "2430.13"


class JwksServer:
    """A stand-in issuer that only serves a JWKS (the real issuer is tested by the lead's suite)."""

    def __init__(self, key: KeyPair) -> None:
        self.keys = [key.public_jwk()]
        self.app = Starlette(routes=[Route("/.well-known/jwks.json", self.jwks)])

    async def jwks(self, _request: Request) -> JSONResponse:
        return JSONResponse({"keys": self.keys}, headers={"cache-control": "public, max-age=300"})


async def test_a_revoked_key_is_dropped_at_once_on_a_key_event(
    redis_settings: McpSettings,
    redis_url: str,
    signing_key: KeyPair,
    engine: Engine,
    clock: FakeClock,
    mint: Mint,
) -> None:
    issuer = JwksServer(signing_key)
    issuer_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=issuer.app), base_url=ISSUER)
    app = build_app_from_settings(redis_settings, clock=clock, http_client=issuer_client, engine=engine)
    publisher = aioredis.Redis.from_url(redis_url)
    async with issuer_client, running(app), http_client(app) as http:
        subscriber = app.state.key_events
        await asyncio.wait_for(subscriber.subscribed.wait(), 10)
        assert (await post(http, mint(), rpc("list_payees", {}))).status_code == 200
        # The issuer revokes the key: gone from its JWKS, and an event on the channel.
        issuer.keys = []
        message = json.dumps({"type": "revoked", "kid": signing_key.kid})
        await publisher.publish(KEY_EVENTS_CHANNEL, message)
        await asyncio.wait_for(subscriber.wait_dropped(signing_key.kid), 10)
        response = await post(http, mint(), rpc("list_payees", {}))
    await publisher.aclose()
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
