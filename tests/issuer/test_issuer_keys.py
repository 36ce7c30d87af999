"""Admin key endpoints, scheduled rotation, key events, and two replicas on one real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
import redis.asyncio as aioredis

from issuer import IssuerSettings, issuer_state
from keys import KEY_EVENTS_CHANNEL, KeyPair, StaticKeys, Verifier, VerifyPolicy
from tests.support.clock import FakeClock
from tests.support.issuer import ISSUER, RESOURCE, Harness, running

DAY = 86400


async def admin_headers(h: Harness) -> dict[str, str]:
    return {"Authorization": f"Bearer {await h.bearer('admin', 'keys:admin')}"}


def states(body: dict[str, Any]) -> dict[str, str]:
    return {k["kid"]: k["state"] for k in body["keys"]}


async def test_admin_list_rotate_revoke(issuer: Harness) -> None:
    headers = await admin_headers(issuer)
    listed = (await issuer.http.get("/admin/keys", headers=headers)).json()
    assert sorted(states(listed).values()) == ["active", "next"]
    assert {"kid", "alg", "state", "created_at"} <= listed["keys"][0].keys()

    refused = await issuer.http.post("/admin/keys/rotate", headers=headers)
    assert refused.status_code == 409
    assert refused.json()["error"] == "next_key_too_young"
    assert "force" in refused.json()["error_description"]

    issuer.clock.advance(601)  # the next key has been published for twice the JWKS max-age
    headers = await admin_headers(issuer)  # the first bearer has expired by now
    rotated = await issuer.http.post("/admin/keys/rotate", headers=headers, json={"alg": "ES256"})
    assert rotated.status_code == 200, rotated.text
    assert sorted(states(rotated.json()).values()) == ["active", "next", "retiring"]

    forced = await issuer.http.post("/admin/keys/rotate", headers=headers, json={"force": True})
    assert forced.status_code == 200

    missing = await issuer.http.post("/admin/keys/nope/revoke", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


async def test_revoking_the_active_key_takes_it_out_of_the_jwks_and_refuses_its_tokens(
    issuer: Harness,
) -> None:
    headers = await admin_headers(issuer)
    old_bearer = await issuer.bearer("backend", "sessions:create")
    old_access = (await issuer.login())["access_token"]
    jwks_before = (await issuer.http.get("/.well-known/jwks.json")).json()
    active = next(
        k["kid"]
        for k in (await issuer.http.get("/admin/keys", headers=headers)).json()["keys"]
        if k["state"] == "active"
    )

    revoked = await issuer.http.post(f"/admin/keys/{active}/revoke", headers=headers)
    assert revoked.status_code == 200
    assert states(revoked.json())[active] == "revoked"
    jwks_after = (await issuer.http.get("/.well-known/jwks.json")).json()
    assert active not in {k["kid"] for k in jwks_after["keys"]}
    assert active in {k["kid"] for k in jwks_before["keys"]}

    # Issuer-audience tokens signed by the revoked key stop working at once.
    response = await issuer.http.post(
        "/sessions", json={"user_id": "alice"}, headers={"Authorization": f"Bearer {old_bearer}"}
    )
    assert response.status_code == 401
    # New tokens are signed by the promoted key and verify against the new JWKS.
    new_access = (await issuer.login())["access_token"]
    check = Verifier(StaticKeys(jwks_after), VerifyPolicy(ISSUER, RESOURCE), clock=issuer.clock)
    check.verify(new_access)
    assert old_access != new_access


async def test_scheduled_rotation_tick(issuer: Harness) -> None:
    state = issuer_state(issuer.app)
    assert await state.rotation.tick() is None  # not due yet
    before = (await issuer.http.get("/.well-known/jwks.json")).json()
    issuer.clock.advance(DAY - 10)
    token = (await issuer.login())["access_token"]  # signed just before the rotation
    issuer.clock.advance(11)
    ring = await state.rotation.tick()
    assert ring is not None
    assert await state.rotation.tick() is None  # once per period
    after = (await issuer.http.get("/.well-known/jwks.json")).json()
    assert before != after
    check = Verifier(StaticKeys(after), VerifyPolicy(ISSUER, RESOURCE), clock=issuer.clock)
    check.verify(token)  # its key is retiring, still published
    check.verify((await issuer.login())["access_token"])  # the new active key signs
    assert "voicebank_issuer_key_rotations_total 1.0" in await issuer.metrics()


async def test_file_store_revocation_publishes_a_key_event(
    make_settings: Callable[..., IssuerSettings],
    clock: FakeClock,
    client_keys: dict[str, KeyPair],
    redis_url: str,
) -> None:
    listener = aioredis.Redis.from_url(redis_url)
    pubsub = listener.pubsub()
    await pubsub.subscribe(KEY_EVENTS_CHANNEL)
    await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
    try:
        async with running(make_settings(redis_url=redis_url), clock, client_keys) as h:
            headers = await admin_headers(h)
            keys = (await h.http.get("/admin/keys", headers=headers)).json()["keys"]
            upcoming = next(k["kid"] for k in keys if k["state"] == "next")
            assert (await h.http.post(f"/admin/keys/{upcoming}/revoke", headers=headers)).status_code == 200
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            assert message is not None
            assert json.loads(message["data"]) == {"type": "revoked", "kid": upcoming}
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await listener.aclose()


async def test_two_replicas_on_one_redis_rotate_once(
    make_settings: Callable[..., IssuerSettings],
    clock: FakeClock,
    client_keys: dict[str, KeyPair],
    redis_url: str,
) -> None:
    settings = make_settings(redis_url=redis_url, keys_store="redis")
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(running(settings, clock, client_keys))
        b = await stack.enter_async_context(running(settings, clock, client_keys))
        sa, sb = issuer_state(a.app), issuer_state(b.app)
        before = (await sa.store.current()).signing_key().kid
        assert (await sb.store.current()).signing_key().kid == before

        clock.advance(DAY + 1)
        results = await asyncio.gather(sa.rotation.tick(), sb.rotation.tick())
        assert sum(r is not None for r in results) == 1

        ring_a, ring_b = await sa.store.current(), await sb.store.current()
        assert ring_a.signing_key().kid == ring_b.signing_key().kid != before
        actives = [k for k in ring_a.describe() if k["state"] == "active"]
        assert len(actives) == 1

        token_a = (await a.login())["access_token"]
        token_b = (await b.login())["access_token"]
        for h in (a, b):
            jwks = (await h.http.get("/.well-known/jwks.json")).json()
            check = Verifier(StaticKeys(jwks), VerifyPolicy(ISSUER, RESOURCE), clock=clock)
            check.verify(token_a)
            check.verify(token_b)
        # The replicas share refresh families and replay state too.
        refresh = (await a.login())["refresh_token"]
        assert (await b.refresh(refresh)).status_code == 200
        assert (await a.refresh(refresh)).json()["error"] == "invalid_grant"


async def test_jwks_max_age_is_one_setting_for_the_header_and_the_rotation_timing(
    make_settings: Callable[..., IssuerSettings],
    clock: FakeClock,
    client_keys: dict[str, KeyPair],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JWKS_MAX_AGE", "120")
    settings = make_settings()
    assert settings.jwks_max_age == 120
    async with running(settings, clock, client_keys) as h:
        jwks = await h.http.get("/.well-known/jwks.json")
        assert jwks.headers["cache-control"] == "public, max-age=120"
        headers = await admin_headers(h)
        # A next key signs only once published for twice the max-age the JWKS announces.
        clock.advance(2 * 120 - 1)
        refused = await h.http.post("/admin/keys/rotate", headers=headers)
        assert refused.status_code == 409
        assert refused.json()["error"] == "next_key_too_young"
        clock.advance(2)
        rotated = await h.http.post("/admin/keys/rotate", headers=headers)
        assert rotated.status_code == 200, rotated.text
