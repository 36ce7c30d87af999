"""DPoP at the issuer (RFC 9449 §5, §8): bound tokens and refresh families, every proof refusal, nonces."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

import keys
from issuer import ClientRegistry, ClientRegistryError, IssuerSettings, issuer_state
from issuer._oauth._errors import InvalidDPoPProof, InvalidGrant
from issuer._oauth._refresh import MemoryRefreshStore, RefreshLifetimes
from issuer._oauth._refresh_redis import RedisRefreshStore
from keys import KeyPair, StaticKeys, Verifier, VerifyPolicy, dpop_proof, generate_key, sign
from keys._algorithms._keypair import public_members
from keys._jose._sign import signature_bytes
from tests.support.clock import FakeClock
from tests.support.issuer import ISSUER, RESOURCE, TOKEN_ENDPOINT, Harness, running
from tests.support.registry import client_registry

# --- helpers ----------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def forged_proof(key: KeyPair, now: float, *, header: dict[str, Any] | None = None, **claims: Any) -> str:
    """A proof with any header or claims, signed by `key` (a signature over what the caller chose)."""
    head: dict[str, Any] = {"typ": "dpop+jwt", "alg": key.alg, "jwk": public_members(key.public_key())}
    head.update(header or {})
    body: dict[str, Any] = {"jti": secrets.token_urlsafe(8)}
    body |= {"htm": "POST", "htu": TOKEN_ENDPOINT, "iat": int(now)}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not ...}
    signing_input = f"{segment(head)}.{segment(body)}"
    return f"{signing_input}.{b64(signature_bytes(key, signing_input.encode()))}"


async def post_token(h: Harness, client: str, proof: str | list[str] | None, **params: str) -> httpx.Response:
    headers: list[tuple[str, str]] = []
    for value in [proof] if isinstance(proof, str) else proof or []:
        headers.append(("DPoP", value))
    return await h.http.post("/token", data={**params, **h.auth(client)}, headers=headers)


def proof(h: Harness, key: KeyPair, **kw: Any) -> str:
    return dpop_proof(key, htm="POST", htu=TOKEN_ENDPOINT, now=h.clock(), **kw)


async def bound_login(h: Harness, key: KeyPair, scope: str = "read") -> dict[str, Any]:
    grant = (await h.session())["session_grant"]
    response = await post_token(
        h,
        "orchestrator",
        proof(h, key),
        grant_type="urn:ietf:params:oauth:grant-type:token-exchange",
        subject_token=grant,
        subject_token_type="urn:ietf:params:oauth:token-type:jwt",
        scope=scope,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(
    h: Harness, token: str, key: KeyPair | None, *, proof_value: str | None = None, **params: str
) -> httpx.Response:
    value = proof_value if proof_value is not None else (proof(h, key) if key is not None else None)
    return await post_token(
        h, "orchestrator", value, grant_type="refresh_token", refresh_token=token, **params
    )


async def claims_of(h: Harness, token: str, audience: str = RESOURCE) -> dict[str, Any]:
    jwks = (await h.http.get("/.well-known/jwks.json")).json()
    return Verifier(StaticKeys(jwks), VerifyPolicy(ISSUER, audience), clock=h.clock).verify(token)


def refused(response: httpx.Response, error: str = "invalid_dpop_proof") -> bool:
    return response.status_code == 400 and response.json()["error"] == error


@pytest.fixture(scope="module")
def dpop_key() -> KeyPair:
    return generate_key("ES256")


@pytest.fixture(scope="module")
def thief_key() -> KeyPair:
    return generate_key("EdDSA")


# --- binding ----------------------------------------------------------------------------------


async def test_metadata_lists_the_proof_algorithms(issuer: Harness) -> None:
    metadata = (await issuer.http.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["dpop_signing_alg_values_supported"] == ["ES256", "EdDSA"]
    assert "none" not in metadata["dpop_signing_alg_values_supported"]


@pytest.mark.parametrize("alg", keys.DPOP_ALGORITHMS)
async def test_token_exchange_with_a_proof_binds_the_token(issuer: Harness, alg: keys.Algorithm) -> None:
    key = generate_key(alg)
    body = await bound_login(issuer, key)
    assert body["token_type"] == "DPoP"
    claims = await claims_of(issuer, body["access_token"])
    assert claims["cnf"] == {"jkt": key.kid}
    assert key.kid == keys.thumbprint(public_members(key.public_key()))


async def test_without_a_proof_the_token_stays_a_bearer_token(issuer: Harness) -> None:
    body = await issuer.login()
    assert body["token_type"] == "Bearer"
    assert "cnf" not in await claims_of(issuer, body["access_token"])
    # The unbound family takes refreshes without proofs.
    assert (await issuer.refresh(body["refresh_token"])).status_code == 200


async def test_refresh_of_a_bound_family_with_its_key(h: Harness, dpop_key: KeyPair) -> None:
    first = await bound_login(h, dpop_key)
    response = await refresh(h, first["refresh_token"], dpop_key, scope="configure")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    assert (await claims_of(h, body["access_token"]))["cnf"] == {"jkt": dpop_key.kid}


async def test_issuer_dpop_wrong_key(h: Harness, dpop_key: KeyPair, thief_key: KeyPair) -> None:
    first = await bound_login(h, dpop_key)
    assert refused(await refresh(h, first["refresh_token"], thief_key))
    # Nothing was spent or revoked: the owner goes on with the very same refresh token.
    assert (await refresh(h, first["refresh_token"], dpop_key)).status_code == 200


async def test_issuer_dpop_bound_family_refused_without_a_proof(h: Harness, dpop_key: KeyPair) -> None:
    first = await bound_login(h, dpop_key)
    response = await refresh(h, first["refresh_token"], None)
    assert refused(response)
    assert "bound to a DPoP key" in response.json()["error_description"]
    assert (await refresh(h, first["refresh_token"], dpop_key)).status_code == 200


async def test_issuer_dpop_wrong_key_on_a_spent_token_revokes_nothing(
    h: Harness, dpop_key: KeyPair, thief_key: KeyPair
) -> None:
    # A thief replaying an old refresh token without the key must not trigger reuse detection.
    first = await bound_login(h, dpop_key)
    second = (await refresh(h, first["refresh_token"], dpop_key)).json()
    assert refused(await refresh(h, first["refresh_token"], thief_key))
    assert (await refresh(h, second["refresh_token"], dpop_key)).status_code == 200


async def test_family_binding_under_a_refresh_race(h: Harness, dpop_key: KeyPair, thief_key: KeyPair) -> None:
    token = (await bound_login(h, dpop_key))["refresh_token"]
    # 20 concurrent refreshes by a thief: every one refused, the family untouched.
    thefts = await asyncio.gather(*(refresh(h, token, thief_key) for _ in range(20)))
    assert all(refused(r) for r in thefts), [r.text for r in thefts]
    # 20 concurrent refreshes with the right key: exactly one winner, as for any refresh token.
    races = await asyncio.gather(*(refresh(h, token, dpop_key) for _ in range(20)))
    statuses = sorted(r.status_code for r in races)
    assert statuses.count(200) == 1, statuses
    assert all(r.json()["error"] == "invalid_grant" for r in races if r.status_code != 200)


async def test_store_refuses_another_key_without_revoking(redis_url: str) -> None:
    lifetimes = RefreshLifetimes(idle=1800, absolute=43200)
    client = aioredis.Redis.from_url(redis_url)
    try:
        for store in (MemoryRefreshStore(lifetimes), RedisRefreshStore(client, lifetimes)):
            token = await store.create(client_id="c", sub="alice", sid="s", scope="read", now=0.0, jkt="k1")
            peeked = await store.peek(token)
            assert peeked is not None
            assert peeked.jkt == "k1"
            results = await asyncio.gather(
                *(store.spend(token, client_id="c", now=1.0, jkt="k2") for _ in range(20)),
                *(store.spend(token, client_id="c", now=1.0) for _ in range(5)),
                return_exceptions=True,
            )
            assert all(isinstance(r, InvalidDPoPProof) for r in results)
            family, _ = await store.spend(token, client_id="c", now=2.0, jkt="k1")
            assert family.jkt == "k1"
            assert not family.revoked
            with pytest.raises(InvalidGrant):  # the winner's token was spent: reuse, as always
                await store.spend(token, client_id="c", now=3.0, jkt="k1")
    finally:
        await client.aclose()


async def test_unbound_family_refreshed_with_a_proof_gets_a_bound_token(
    issuer: Harness, dpop_key: KeyPair
) -> None:
    body = await issuer.login()
    response = await refresh(issuer, body["refresh_token"], dpop_key)
    assert response.json()["token_type"] == "DPoP"
    assert (await claims_of(issuer, response.json()["access_token"]))["cnf"] == {"jkt": dpop_key.kid}


async def test_client_credentials_stay_bearer_tokens(issuer: Harness, dpop_key: KeyPair) -> None:
    response = await post_token(
        issuer, "backend", proof(issuer, dpop_key), grant_type="client_credentials", scope="sessions:create"
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"
    assert "cnf" not in await claims_of(issuer, response.json()["access_token"], ISSUER)


async def test_issuer_endpoints_refuse_a_bound_token_as_bearer(issuer: Harness, dpop_key: KeyPair) -> None:
    # The issuer never binds its own tokens; one that is bound is no bearer token anyway (RFC 9449 §7.2).
    ring = await issuer_state(issuer.app).store.current()
    now = int(issuer.clock())
    claims = {
        "iss": ISSUER, "sub": "backend", "aud": ISSUER, "iat": now, "exp": now + 60, "jti": "j",
        "client_id": "backend", "scope": "sessions:create", "cnf": {"jkt": dpop_key.kid},
    }  # fmt: skip
    token = sign(claims, ring.signing_key("ES256"), typ="at+jwt")
    response = await issuer.http.post(
        "/sessions", json={"user_id": "alice", "scope": "read"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401


# --- a client registered with dpop_bound_access_tokens ----------------------------------------


@pytest.fixture
async def bound_client(
    tmp_path: Path,
    make_settings: Callable[..., IssuerSettings],
    clock: FakeClock,
    client_keys: dict[str, KeyPair],
) -> AsyncIterator[Harness]:
    data = client_registry(client_keys)
    for client in data["clients"]:
        if client["client_id"] == "orchestrator":
            client["dpop_bound_access_tokens"] = True
    path = tmp_path / "bound-clients.json"
    path.write_text(json.dumps(data))
    async with running(make_settings(issuer_clients_file=path), clock, client_keys) as harness:
        yield harness


async def test_a_bound_client_must_send_a_proof(bound_client: Harness, dpop_key: KeyPair) -> None:
    grant = (await bound_client.session())["session_grant"]
    response = await bound_client.exchange(grant)
    assert refused(response)
    assert "every request" in response.json()["error_description"]
    # The grant was not burnt by the refusal.
    assert (await bound_login(bound_client, dpop_key))["token_type"] == "DPoP"


async def test_a_bound_client_refresh_without_a_proof_is_refused(
    bound_client: Harness, dpop_key: KeyPair
) -> None:
    body = await bound_login(bound_client, dpop_key)
    assert refused(await refresh(bound_client, body["refresh_token"], None))
    assert (await refresh(bound_client, body["refresh_token"], dpop_key)).status_code == 200


async def test_registration_defaults_to_unbound(tmp_path: Path, client_keys: dict[str, KeyPair]) -> None:
    registry = ClientRegistry.from_data(client_registry(client_keys))
    assert not any(client.dpop_bound_access_tokens for client in registry.clients())
    data = client_registry(client_keys)
    data["clients"][0]["dpop_bound_access_tokens"] = "yes please"
    with pytest.raises(ClientRegistryError, match="dpop_bound_access_tokens"):
        ClientRegistry.from_data(data)


# --- RFC 9449 §4.3 at the token endpoint: each refusal --------------------------------------


async def assert_refused(h: Harness, key: KeyPair, value: str | list[str], reason: str) -> None:
    """A bound family's refresh with this proof is refused with invalid_dpop_proof, and nothing is spent."""
    body = await bound_login(h, key)
    response = await post_token(
        h, "orchestrator", value, grant_type="refresh_token", refresh_token=body["refresh_token"]
    )
    assert refused(response), (reason, response.text)
    assert (await refresh(h, body["refresh_token"], key)).status_code == 200, reason


async def test_issuer_dpop_replayed_jti(h: Harness, dpop_key: KeyPair) -> None:
    body = await bound_login(h, dpop_key)
    value = proof(h, dpop_key)
    first = await refresh(h, body["refresh_token"], dpop_key, proof_value=value)
    assert first.status_code == 200
    assert refused(await refresh(h, first.json()["refresh_token"], dpop_key, proof_value=value))


async def test_issuer_dpop_wrong_htm(issuer: Harness, dpop_key: KeyPair) -> None:
    value = dpop_proof(dpop_key, htm="GET", htu=TOKEN_ENDPOINT, now=issuer.clock())
    await assert_refused(issuer, dpop_key, value, "wrong htm")


async def test_issuer_dpop_wrong_htu(issuer: Harness, dpop_key: KeyPair) -> None:
    value = dpop_proof(dpop_key, htm="POST", htu=ISSUER + "/revoke", now=issuer.clock())
    await assert_refused(issuer, dpop_key, value, "wrong htu")


async def test_issuer_dpop_htu_with_query(issuer: Harness, dpop_key: KeyPair) -> None:
    value = forged_proof(dpop_key, issuer.clock(), htu=TOKEN_ENDPOINT + "?grant_type=refresh_token")
    await assert_refused(issuer, dpop_key, value, "htu with a query")


async def test_issuer_dpop_missing_ath_is_not_required(issuer: Harness, dpop_key: KeyPair) -> None:
    # RFC 9449 §4.3 checks ath only when an access token comes with the proof; a token request has none.
    body = await bound_login(issuer, dpop_key)
    assert (await refresh(issuer, body["refresh_token"], dpop_key)).status_code == 200


async def test_issuer_dpop_wrong_ath_proof_for_the_resource(issuer: Harness, dpop_key: KeyPair) -> None:
    # A proof the client made for the MCP server (with ath) is worth nothing at the token endpoint.
    value = dpop_proof(dpop_key, htm="POST", htu=RESOURCE, now=issuer.clock(), access_token="at")
    await assert_refused(issuer, dpop_key, value, "proof made for the resource")


async def test_issuer_dpop_stale_iat(issuer: Harness, dpop_key: KeyPair) -> None:
    value = dpop_proof(dpop_key, htm="POST", htu=TOKEN_ENDPOINT, now=issuer.clock() - 61)
    await assert_refused(issuer, dpop_key, value, "stale iat")


async def test_issuer_dpop_future_iat_beyond_leeway(issuer: Harness, dpop_key: KeyPair) -> None:
    value = dpop_proof(dpop_key, htm="POST", htu=TOKEN_ENDPOINT, now=issuer.clock() + 61)
    await assert_refused(issuer, dpop_key, value, "future iat")


async def test_issuer_dpop_alg_none(issuer: Harness, dpop_key: KeyPair) -> None:
    head = {"typ": "dpop+jwt", "alg": "none", "jwk": public_members(dpop_key.public_key())}
    claims = {"jti": "n", "htm": "POST", "htu": TOKEN_ENDPOINT, "iat": int(issuer.clock())}
    await assert_refused(issuer, dpop_key, f"{segment(head)}.{segment(claims)}.", "alg none")


async def test_issuer_dpop_hs256(issuer: Harness, dpop_key: KeyPair) -> None:
    head = {"typ": "dpop+jwt", "alg": "HS256", "jwk": public_members(dpop_key.public_key())}
    claims = {"jti": "h", "htm": "POST", "htu": TOKEN_ENDPOINT, "iat": int(issuer.clock())}
    signing_input = f"{segment(head)}.{segment(claims)}"
    mac = hmac.new(b"s" * 32, signing_input.encode(), hashlib.sha256).digest()
    await assert_refused(issuer, dpop_key, f"{signing_input}.{b64(mac)}", "HS256")


async def test_issuer_dpop_rs256_with_ec_key(issuer: Harness, dpop_key: KeyPair) -> None:
    rsa = generate_key("RS256")
    head = {"typ": "dpop+jwt", "alg": "RS256", "jwk": public_members(dpop_key.public_key())}
    claims = {"jti": "r", "htm": "POST", "htu": TOKEN_ENDPOINT, "iat": int(issuer.clock())}
    signing_input = f"{segment(head)}.{segment(claims)}"
    value = f"{signing_input}.{b64(signature_bytes(rsa, signing_input.encode()))}"
    await assert_refused(issuer, dpop_key, value, "RS256 with an EC key")


async def test_issuer_dpop_private_d_in_jwk(issuer: Harness, dpop_key: KeyPair) -> None:
    jwk = {**public_members(dpop_key.public_key()), "d": b64(b"\x07" * 32)}
    value = forged_proof(dpop_key, issuer.clock(), header={"jwk": jwk})
    await assert_refused(issuer, dpop_key, value, "private d")


async def test_issuer_dpop_wrong_typ(issuer: Harness, dpop_key: KeyPair) -> None:
    value = forged_proof(dpop_key, issuer.clock(), header={"typ": "JWT"})
    await assert_refused(issuer, dpop_key, value, "typ JWT")


async def test_issuer_dpop_proof_over_the_size_cap(issuer: Harness, dpop_key: KeyPair) -> None:
    value = forged_proof(dpop_key, issuer.clock(), pad="p" * keys.MAX_PROOF_SIZE)
    await assert_refused(issuer, dpop_key, value, "size cap")


async def test_issuer_dpop_two_headers(issuer: Harness, dpop_key: KeyPair) -> None:
    await assert_refused(issuer, dpop_key, [proof(issuer, dpop_key), proof(issuer, dpop_key)], "two headers")


async def test_issuer_dpop_bad_signature(issuer: Harness, dpop_key: KeyPair) -> None:
    value = forged_proof(
        generate_key("ES256"), issuer.clock(), header={"jwk": public_members(dpop_key.public_key())}
    )
    await assert_refused(issuer, dpop_key, value, "signed by another key")


async def test_issuer_dpop_malformed(issuer: Harness, dpop_key: KeyPair) -> None:
    await assert_refused(issuer, dpop_key, "not-a-proof", "malformed")


# --- nonces -----------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
async def nonce_issuer(
    request: pytest.FixtureRequest,
    make_settings: Callable[..., IssuerSettings],
    clock: FakeClock,
    client_keys: dict[str, KeyPair],
) -> AsyncIterator[Harness]:
    overrides: dict[str, Any] = {"dpop_nonce": "required"}
    if request.param == "redis":
        overrides["redis_url"] = request.getfixturevalue("redis_url")
    async with running(make_settings(**overrides), clock, client_keys) as harness:
        yield harness


async def nonce_login(h: Harness, key: KeyPair) -> tuple[dict[str, Any], str]:
    """The token exchange as a client does it: challenged once, answered with the nonce."""
    grant = (await h.session())["session_grant"]
    params = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": grant,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
    }
    first = await post_token(h, "orchestrator", proof(h, key), **params)
    assert refused(first, "use_dpop_nonce"), first.text
    nonce = first.headers["DPoP-Nonce"]
    second = await post_token(h, "orchestrator", proof(h, key, nonce=nonce), **params)
    assert second.status_code == 200, second.text
    return second.json(), second.headers["DPoP-Nonce"]


async def test_issuer_dpop_nonce_missing_when_required(nonce_issuer: Harness, dpop_key: KeyPair) -> None:
    body, nonce = await nonce_login(nonce_issuer, dpop_key)
    assert body["token_type"] == "DPoP"
    # The answer's nonce serves the next request without another challenge.
    response = await refresh(
        nonce_issuer, body["refresh_token"], None, proof_value=proof(nonce_issuer, dpop_key, nonce=nonce)
    )
    assert response.status_code == 200, response.text
    assert response.headers["DPoP-Nonce"] == nonce


async def test_issuer_dpop_stale_nonce(nonce_issuer: Harness, dpop_key: KeyPair) -> None:
    body, nonce = await nonce_login(nonce_issuer, dpop_key)
    nonce_issuer.clock.advance(600)  # two nonce windows later
    stale = await refresh(
        nonce_issuer, body["refresh_token"], None, proof_value=proof(nonce_issuer, dpop_key, nonce=nonce)
    )
    assert refused(stale, "use_dpop_nonce")
    fresh = stale.headers["DPoP-Nonce"]
    assert fresh != nonce
    again = await refresh(
        nonce_issuer, body["refresh_token"], None, proof_value=proof(nonce_issuer, dpop_key, nonce=fresh)
    )
    assert again.status_code == 200, again.text


async def test_issuer_nonces_hold_across_replicas(
    redis_url: str,
    make_settings: Callable[..., IssuerSettings],
    clock: FakeClock,
    client_keys: dict[str, KeyPair],
    dpop_key: KeyPair,
) -> None:
    settings = make_settings(dpop_nonce="required", redis_url=redis_url)
    async with running(settings, clock, client_keys) as one, running(settings, clock, client_keys) as two:
        body, nonce = await nonce_login(one, dpop_key)
        response = await refresh(
            two, body["refresh_token"], None, proof_value=proof(two, dpop_key, nonce=nonce)
        )
        assert response.status_code == 200, response.text
        assert response.headers["DPoP-Nonce"] == nonce


async def test_without_required_nonces_no_nonce_header(issuer: Harness, dpop_key: KeyPair) -> None:
    grant = (await issuer.session())["session_grant"]
    response = await post_token(
        issuer,
        "orchestrator",
        proof(issuer, dpop_key),
        grant_type="urn:ietf:params:oauth:grant-type:token-exchange",
        subject_token=grant,
        subject_token_type="urn:ietf:params:oauth:token-type:jwt",
    )
    assert response.status_code == 200
    assert "DPoP-Nonce" not in response.headers
