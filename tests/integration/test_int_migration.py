"""An ES256 → RS256 migration walked end to end while a call keeps calling: not one call fails.

The walk (docs/architecture.md "Changing the signing algorithm"): `rotate {"alg": "RS256"}` publishes a
next RS256 key that does not sign; once it has been published for twice the JWKS max-age, replicas restart
with `ISSUER_SIGNING_ALG=RS256` and sign with it; when every replica has switched, `retire {"alg":
"ES256"}` lets the old key retire on the usual schedule, and the scheduled step removes it from the JWKS
after its last token expired. Time moves with freezegun; two issuer apps share one Redis key ring.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from freezegun import freeze_time
from freezegun.api import FrozenDateTimeFactory, StepTickTimeFactory

from issuer import IssuerStartupError, issuer_state
from issuer import create_app as create_issuer
from keys import RotationPolicy, assertion_form
from orchestrator._tokens._issuer_client import IssuerClient
from orchestrator._tokens._manager import TokenManager
from orchestrator._tokens._retry import RetryPolicy
from tests.support.clock import START, FakeClock
from tests.support.issuer import ISSUER
from tests.support.lifespan import running
from tests.support.stack import Stack, bound, kid_of, running_stack, segment

STEP = 30.0  # seconds between two calls of the conversation


class FrozenClock(FakeClock):
    """The stack's clock read from freezegun: `advance` ticks the frozen time everybody sees."""

    def __init__(self, frozen: FrozenDateTimeFactory | StepTickTimeFactory) -> None:
        super().__init__()
        self._frozen = frozen

    def __call__(self) -> float:
        return datetime.now(UTC).timestamp()

    def advance(self, seconds: float) -> None:
        self._frozen.tick(seconds)


class Balancer(httpx.AsyncBaseTransport):
    """The load balancer in front of the issuer replicas: requests go to `target`."""

    def __init__(self, apps: dict[str, Any]) -> None:
        self.apps = apps
        self.target = "es256"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await httpx.ASGITransport(app=self.apps[self.target]).handle_async_request(request)


@pytest.fixture
def frozen() -> Iterator[FrozenDateTimeFactory | StepTickTimeFactory]:
    # FastAPI imports pydantic.v1 lazily, which breaks under freezegun's date: import it before freezing.
    importlib.import_module("pydantic.v1")
    with freeze_time(datetime.fromtimestamp(START, UTC), real_asyncio=True) as factory:
        yield factory


async def admin(stack: Stack, http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """An admin call through `http` (one replica, or the load balancer), with a fresh admin bearer."""
    key = stack.client_keys["admin"]
    form = {"grant_type": "client_credentials", "scope": "keys:admin"}
    form |= assertion_form("admin", key, f"{ISSUER}/token", stack.clock())
    token = (await http.post("/token", data=form)).json()["access_token"]
    response = await http.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_es256_to_rs256_under_continuous_calls_fails_no_call(
    tmp_path: Path, redis_url: str, frozen: FrozenDateTimeFactory | StepTickTimeFactory
) -> None:
    clock = FrozenClock(frozen)
    async with running_stack(tmp_path, redis_url=redis_url, keys_store="redis", clock=clock) as stack:
        es256_settings = issuer_state(stack.issuer_app).settings
        policy = RotationPolicy(max_token_lifetime=600)  # the stack's lifetimes: 600 s grants at most
        balancer = Balancer({"es256": stack.issuer_app})
        wire = httpx.AsyncClient(transport=balancer, base_url=ISSUER)
        client = IssuerClient(
            wire,
            issuer=ISSUER,
            client_id="orchestrator",
            key=stack.client_keys["orchestrator"],
            retry=RetryPolicy(attempts=1),
            clock=clock,
        )
        tokens = TokenManager(client, clock=clock)
        await tokens.start(await stack.session_grant(), "read")
        signed: dict[str, str] = {}  # kid -> alg of every token a call used
        calls = 0

        async def converse(steps: int) -> None:
            """The caller keeps talking: one tool call every STEP seconds, each must succeed."""
            nonlocal calls
            for _ in range(steps):
                clock.advance(STEP)
                scope = ("read", "configure", "transact")[calls % 3]
                payment = stack.payment("1.00", f"mig-{calls}")
                if scope == "transact":  # a single-use token bound to exactly this payment
                    token = await tokens.transact_token(bound("make_payment", payment))
                else:
                    token = await tokens.get_token(scope)
                signed[kid_of(token)] = segment(token, 0)["alg"]
                if scope == "read":
                    assert (await stack.call(token, "get_balance"))["accounts"]
                elif scope == "configure":
                    answer = await stack.call(token, "update_notification_settings", channel="sms")
                    assert answer["settings"]
                else:
                    paid = await stack.call(token, "make_payment", **payment)
                    assert paid["status"] == "completed"
                calls += 1

        async def jwks_algs() -> list[str]:
            body = (await wire.get("/.well-known/jwks.json")).json()
            return sorted(jwk["alg"] for jwk in body["keys"])

        await converse(3)

        # 1. Prepare: a next RS256 key is published and does not sign.
        ring = await admin(stack, stack.issuer_http, "/admin/keys/rotate", {"alg": "RS256"})
        rs256 = [k for k in ring["keys"] if k["alg"] == "RS256"]
        assert [k["state"] for k in rs256] == ["next"]
        assert await jwks_algs() == ["ES256", "ES256", "RS256"]
        prepared_at = clock()
        await converse(2)
        assert set(signed.values()) == {"ES256"}

        # 2. A replica restarted with ISSUER_SIGNING_ALG=RS256 too early refuses to start: no verifier
        #    may meet an RS256 key it has not cached.
        rs256_settings = es256_settings.model_copy(update={"issuer_signing_alg": "RS256"})
        too_early = create_issuer(rs256_settings, clock=clock, rotation_sleep=_never)
        with pytest.raises(IssuerStartupError, match="may sign after"):
            async with running(too_early):
                pass

        # 3. Past twice the JWKS max-age the restarted replica promotes the key every cache holds.
        while clock() - prepared_at < policy.publish_ahead:
            await converse(1)
        tokens.invalidate("read")
        early = await tokens.get_token("read")  # ES256, used again after the switch
        assert segment(early, 0)["alg"] == "ES256"
        switched = create_issuer(rs256_settings, clock=clock, rotation_sleep=_never)
        async with running(switched):
            balancer.apps["rs256"] = switched
            # The load balancer moves the traffic while a call is under way; the ES256 replica leaves
            # it (the MCP server's JWKS comes through the balancer's replica from now on).
            balancer.target = "rs256"
            stack.link.inner = httpx.ASGITransport(app=switched)
            tokens.invalidate("read")
            await converse(6)
            assert rs256[0]["kid"] in signed
            assert signed[rs256[0]["kid"]] == "RS256"
            # Tokens the ES256 key signed before the switch still verify until they expire.
            assert (await stack.call(early, "list_payees"))["payees"]

            # 4. Every replica signs RS256 now: retire ES256. Its key stays published until its last
            #    token expired, then the scheduled step takes it out of the JWKS.
            retired_at = clock()
            answer = await admin(stack, wire, "/admin/keys/retire", {"alg": "ES256"})
            assert {k["state"] for k in answer["keys"] if k["alg"] == "ES256"} >= {"retiring"}
            assert (await stack.call(early, "list_loans"))["loans"]
            while clock() - retired_at < policy.retire_delay:
                await converse(1)
            assert await issuer_state(switched).rotation.tick() is not None
            assert await jwks_algs() == ["RS256", "RS256"]
            await converse(3)
        await wire.aclose()

    assert calls >= 40
    assert set(signed.values()) == {"ES256", "RS256"}


async def _never(_: float) -> None:
    await asyncio.Event().wait()
