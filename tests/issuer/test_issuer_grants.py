"""Happy paths of every grant, `/sessions`, `/revoke`, discovery and the JWKS."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from livekit import api

from issuer import IssuerSettings
from keys import Expired, KeyPair, StaticKeys, Verifier, VerifyPolicy
from tests.support.clock import FakeClock
from tests.support.issuer import ISSUER, RESOURCE, Harness, payment, running


async def verifier(h: Harness, *, audience: str, typ: str = "at+jwt", **kw: Any) -> Verifier:
    jwks = (await h.http.get("/.well-known/jwks.json")).json()
    return Verifier(StaticKeys(jwks), VerifyPolicy(ISSUER, audience, typ=typ, **kw), clock=h.clock)


async def test_client_credentials_gives_an_issuer_bearer_without_refresh(issuer: Harness) -> None:
    response = await issuer.token("admin", grant_type="client_credentials", scope="keys:admin")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body.keys() == {"access_token", "token_type", "expires_in", "scope"}
    claims = (await verifier(issuer, audience=ISSUER)).verify(body["access_token"])
    assert claims["sub"] == claims["client_id"] == "admin"
    assert claims["scope"] == "keys:admin"
    assert "act" not in claims


async def test_client_credentials_default_scope_is_the_registration(issuer: Harness) -> None:
    response = await issuer.token("backend", grant_type="client_credentials")
    assert response.json()["scope"] == "approvals:decide sessions:create"


async def test_session_then_exchange_gives_a_delegated_access_token(issuer: Harness) -> None:
    session = await issuer.session("alice", "read transact")
    assert session["livekit"] is None
    assert session["expires_in"] == 600
    grant = (await verifier(issuer, audience=ISSUER, typ="session-grant+jwt")).verify(
        session["session_grant"]
    )
    assert grant["may_act"] == {"sub": "orchestrator"}
    assert grant["sid"] == session["session_id"]
    assert grant["scope"] == "read transact"

    response = await issuer.exchange(session["session_grant"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert body["scope"] == "read"
    assert body["expires_in"] == 300
    assert len(body["refresh_token"]) >= 43
    claims = (await verifier(issuer, audience=RESOURCE)).verify(body["access_token"])
    assert set(claims) == {
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "client_id",
        "scope",
        "sid",
        "act",
    }
    assert claims["sub"] == "alice"
    assert claims["act"] == {"sub": "orchestrator"}
    assert claims["client_id"] == "orchestrator"
    assert claims["sid"] == session["session_id"]
    assert claims["aud"] == RESOURCE


async def test_transact_tokens_live_sixty_seconds(issuer: Harness) -> None:
    first = await issuer.login()
    body = (await issuer.transact(first["refresh_token"], payment(), resource=RESOURCE)).json()
    assert body["expires_in"] == 60
    claims = (await verifier(issuer, audience=RESOURCE)).verify(body["access_token"])
    assert claims["exp"] - claims["iat"] == 60


async def test_refresh_rotates_and_narrows(issuer: Harness) -> None:
    first = await issuer.login()
    response = await issuer.refresh(first["refresh_token"], scope="configure")
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["scope"] == "configure"
    assert second["refresh_token"] != first["refresh_token"]
    claims = (await verifier(issuer, audience=RESOURCE)).verify(second["access_token"])
    assert (claims["sub"], claims["scope"]) == ("alice", "configure")
    # Without scope, the whole family scope (every grant scope the client may hold) but transact, which
    # needs authorization_details.
    third = (await issuer.refresh(second["refresh_token"])).json()
    assert third["scope"] == "configure read"


async def test_refresh_family_holds_only_scopes_the_client_may_hold(issuer: Harness) -> None:
    session = await issuer.session("bob", "read transact")
    grant = session["session_grant"]
    # Grant names the orchestrator; `other` may not exchange it.
    assert (await issuer.exchange(grant, client_id="other")).json()["error"] == "invalid_grant"
    first = (await issuer.exchange(grant)).json()
    assert (await issuer.refresh(first["refresh_token"], scope="configure")).json()[
        "error"
    ] == "invalid_scope"


async def test_access_token_expires(issuer: Harness) -> None:
    body = await issuer.login()
    check = await verifier(issuer, audience=RESOURCE, leeway=0)
    check.verify(body["access_token"])
    issuer.clock.advance(301)
    with pytest.raises(Expired):
        check.verify(body["access_token"])


async def test_revoke_kills_the_family(issuer: Harness) -> None:
    first = await issuer.login()
    second = (await issuer.refresh(first["refresh_token"])).json()
    response = await issuer.http.post(
        "/revoke", data={"token": first["refresh_token"], **issuer.auth("orchestrator")}
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    refused = await issuer.refresh(second["refresh_token"])
    assert refused.json()["error"] == "invalid_grant"
    # Unknown and already revoked tokens answer 200 too (RFC 7009 §2.2).
    for token in ("not-a-token", second["refresh_token"]):
        again = await issuer.http.post("/revoke", data={"token": token, **issuer.auth("orchestrator")})
        assert again.status_code == 200


async def test_sessions_with_livekit_returns_a_participant_token(
    make_settings: Callable[..., IssuerSettings], clock: FakeClock, client_keys: dict[str, KeyPair]
) -> None:
    settings = make_settings(
        livekit_url="ws://127.0.0.1:7880",
        livekit_api_key="devkey",
        livekit_api_secret="s" * 32,
        orchestrator_client_id="orchestrator",
    )
    async with running(settings, clock, client_keys) as h:
        bearer = await h.bearer("backend", "sessions:create")
        response = await h.http.post(
            "/sessions",
            json={"user_id": "alice", "scope": "read", "room": "room-1"},
            headers={"Authorization": f"Bearer {bearer}"},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["session_id"] == "room-1"
        livekit = body["livekit"]
        assert livekit["url"] == "ws://127.0.0.1:7880"
        assert livekit["room"] == "room-1"
        claims = api.TokenVerifier("devkey", "s" * 32).verify(livekit["participant_token"])
        assert claims.identity == "alice"
        assert claims.video is not None
        assert claims.video.room_join is True
        assert claims.video.room == "room-1"
        assert json.loads(claims.metadata) == {
            "user_id": "alice",
            "session_id": "room-1",
            "session_grant": body["session_grant"],
        }
        assert claims.room_config is not None
        assert [agent.agent_name for agent in claims.room_config.agents] == ["voicebank-agent"]


async def test_discovery_metadata(issuer: Harness) -> None:
    meta = (await issuer.http.get("/.well-known/oauth-authorization-server")).json()
    assert meta["issuer"] == ISSUER
    assert meta["token_endpoint"] == ISSUER + "/token"
    assert meta["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
    assert meta["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in meta["grant_types_supported"]


async def test_jwks_is_cacheable_with_a_strong_etag(issuer: Harness) -> None:
    response = await issuer.http.get("/.well-known/jwks.json")
    assert response.headers["cache-control"] == "public, max-age=300"
    etag = response.headers["etag"]
    assert etag.startswith('"')
    assert [k["kid"] for k in response.json()["keys"]]
    assert all("d" not in k for k in response.json()["keys"])
    cached = await issuer.http.get("/.well-known/jwks.json", headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.headers["etag"] == etag
    assert cached.content == b""
    other = await issuer.http.get("/.well-known/jwks.json", headers={"If-None-Match": '"x"'})
    assert other.status_code == 200


async def test_regression_metrics_are_not_on_the_public_port(issuer: Harness) -> None:
    # They list internal refusal reasons (an oracle for an attacker): only the loopback listener has them.
    await issuer.http.post("/token", data={"grant_type": "client_credentials"})  # refused: a reason counted
    for method in ("GET", "POST"):
        response = await issuer.http.request(method, "/metrics")
        assert response.status_code == 404
        assert "issuer_errors" not in response.text
    assert 'issuer_errors_total{code="invalid_client",reason="no_client_auth"} 1.0' in await issuer.metrics()


async def test_health_ready_metrics(issuer: Harness) -> None:
    assert (await issuer.http.get("/healthz")).json() == {"status": "ok"}
    assert (await issuer.http.get("/readyz")).json() == {"status": "ready"}
    await issuer.login()
    metrics = await issuer.metrics()
    exchange = "urn:ietf:params:oauth:grant-type:token-exchange"
    assert f'voicebank_issuer_tokens_issued_total{{grant_type="{exchange}"}} 1.0' in metrics


async def test_assertion_audience_may_be_the_issuer_url(issuer: Harness) -> None:
    form = {"grant_type": "client_credentials", **issuer.auth("admin", audience=ISSUER)}
    assert (await issuer.http.post("/token", data=form)).status_code == 200
