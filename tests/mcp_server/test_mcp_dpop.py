"""DPoP at the MCP server (RFC 9449 §7, SEP-1932): a bound token needs its key's proof; each refusal named."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine
from starlette.applications import Starlette

import keys
from keys import KeyPair, Verifier, dpop_proof, generate_key
from keys._algorithms._keypair import public_members
from keys._jose._sign import signature_bytes
from mcp_server import McpSettings, create_app
from tests.support.clock import FakeClock
from tests.support.issuer import ISSUER, RESOURCE
from tests.support.lifespan import running
from tests.support.mcp import METADATA, Mint, http_client, post, rpc

ALGS = 'algs="ES256 EdDSA"'
INVALID_PROOF = f'DPoP error="invalid_dpop_proof", {ALGS}, resource_metadata="{METADATA}"'


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def forged_proof(
    key: KeyPair, now: float, token: str, *, header: dict[str, Any] | None = None, **claims: Any
) -> str:
    """A proof with any header or claims, signed by `key`."""
    head: dict[str, Any] = {"typ": "dpop+jwt", "alg": key.alg, "jwk": public_members(key.public_key())}
    head.update(header or {})
    body: dict[str, Any] = {
        "jti": secrets.token_urlsafe(8),
        "htm": "POST",
        "htu": RESOURCE,
        "iat": int(now),
        "ath": keys.access_token_hash(token),
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not ...}
    signing_input = f"{segment(head)}.{segment(body)}"
    return f"{signing_input}.{b64(signature_bytes(key, signing_input.encode()))}"


@pytest.fixture(scope="module")
def call_key() -> KeyPair:
    return generate_key("ES256")


@pytest.fixture
def bound(mint: Mint, call_key: KeyPair) -> Callable[..., str]:
    """A token bound to the call's key (`cnf.jkt`)."""

    def make(scope: str = "read", **claims: Any) -> str:
        return mint(scope=scope, cnf={"jkt": call_key.kid}, **claims)

    return make


async def dpop_post(
    http: httpx2.AsyncClient,
    token: str,
    proof: str | list[str] | None,
    tool: str = "get_balance",
    arguments: dict[str, Any] | None = None,
    scheme: str = "DPoP",
) -> httpx2.Response:
    headers: list[tuple[str, str]] = [("authorization", f"{scheme} {token}")]
    headers += [("dpop", value) for value in ([proof] if isinstance(proof, str) else proof or [])]
    body = rpc(tool, arguments or {})
    sent = [
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", tool),
        *headers,
    ]
    return await http.post("/mcp", json=body, headers=sent)


def proof_for(key: KeyPair, clock: FakeClock, token: str, **kw: Any) -> str:
    return dpop_proof(key, htm="POST", htu=RESOURCE, now=clock(), access_token=token, **kw)


def ok(response: httpx2.Response) -> bool:
    return response.status_code == 200 and "accounts" in response.text


def refused(response: httpx2.Response, challenge: str = INVALID_PROOF) -> bool:
    return response.status_code == 401 and response.headers.get("www-authenticate") == challenge


# --- accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", keys.DPOP_ALGORITHMS)
async def test_bound_token_with_its_proof_is_accepted(
    http: httpx2.AsyncClient, mint: Mint, clock: FakeClock, alg: keys.Algorithm
) -> None:
    key = generate_key(alg)
    token = mint(cnf={"jkt": key.kid})
    assert ok(await dpop_post(http, token, proof_for(key, clock, token)))


async def test_scheme_name_is_case_insensitive(
    http: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    assert ok(await dpop_post(http, token, proof_for(call_key, clock, token), scheme="dpop"))


async def test_unbound_bearer_token_still_works_when_dpop_is_not_required(
    http: httpx2.AsyncClient, mint: Mint
) -> None:
    assert ok(await post(http, mint(), rpc("get_balance", {})))


async def test_metadata_advertises_dpop(http: httpx2.AsyncClient) -> None:
    document = (await http.get("/.well-known/oauth-protected-resource/mcp")).json()
    assert document["dpop_signing_alg_values_supported"] == ["ES256", "EdDSA"]
    assert document["dpop_bound_access_tokens_required"] is False


# --- RFC 9449 §7: the token's scheme ----------------------------------------------------------


async def test_bound_token_as_bearer_is_refused(http: httpx2.AsyncClient, bound: Callable[..., str]) -> None:
    response = await post(http, bound(), rpc("get_balance", {}))
    assert refused(response, f'DPoP error="invalid_token", {ALGS}, resource_metadata="{METADATA}"')


async def test_bound_token_as_bearer_with_a_proof_is_still_refused(
    http: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    response = await dpop_post(http, token, proof_for(call_key, clock, token), scheme="Bearer")
    assert response.status_code == 401


async def test_unbound_token_as_dpop_is_refused(
    http: httpx2.AsyncClient, mint: Mint, call_key: KeyPair, clock: FakeClock
) -> None:
    token = mint()
    response = await dpop_post(http, token, proof_for(call_key, clock, token))
    assert refused(response, f'Bearer error="invalid_token", resource_metadata="{METADATA}"')


async def test_malformed_cnf_is_not_a_bearer_token(
    http: httpx2.AsyncClient, mint: Mint, call_key: KeyPair, clock: FakeClock
) -> None:
    for cnf in ({"jkt": 5}, "jkt", {"x5t#S256": "abc"}):
        token = mint(cnf=cnf)
        assert (await post(http, token, rpc("get_balance", {}))).status_code == 401
        assert (await dpop_post(http, token, proof_for(call_key, clock, token))).status_code == 401


async def test_bad_token_with_a_good_proof_is_invalid_token(
    http: httpx2.AsyncClient, mint: Mint, call_key: KeyPair, clock: FakeClock
) -> None:
    token = mint(cnf={"jkt": call_key.kid}, key=generate_key("ES256"))  # signed by a stranger
    response = await dpop_post(http, token, proof_for(call_key, clock, token))
    assert refused(response, f'DPoP error="invalid_token", {ALGS}, resource_metadata="{METADATA}"')


# --- RFC 9449 §4.3 at the MCP server: each refusal, a 401 invalid_dpop_proof ------------------


async def test_mcp_dpop_missing_proof(http: httpx2.AsyncClient, bound: Callable[..., str]) -> None:
    assert refused(await dpop_post(http, bound(), None))


async def test_mcp_dpop_two_proofs(
    http: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    proofs = [proof_for(call_key, clock, token), proof_for(call_key, clock, token)]
    assert refused(await dpop_post(http, token, proofs))


async def test_mcp_dpop_wrong_key(
    http: httpx2.AsyncClient, bound: Callable[..., str], clock: FakeClock
) -> None:
    token = bound()
    assert refused(await dpop_post(http, token, proof_for(generate_key("ES256"), clock, token)))


async def test_mcp_dpop_replayed_jti(
    http: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    proof = proof_for(call_key, clock, token)
    assert ok(await dpop_post(http, token, proof))
    assert refused(await dpop_post(http, token, proof))


async def test_mcp_dpop_wrong_htm(
    http: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    proof = dpop_proof(call_key, htm="GET", htu=RESOURCE, now=clock(), access_token=token)
    assert refused(await dpop_post(http, token, proof))


async def test_mcp_dpop_wrong_htu(
    http: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    for htu in (ISSUER + "/mcp", RESOURCE + "/other", "https://127.0.0.1:8001/mcp"):
        proof = dpop_proof(call_key, htm="POST", htu=htu, now=clock(), access_token=token)
        assert refused(await dpop_post(http, token, proof)), htu


async def test_mcp_dpop_htu_with_query(
    http: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    for htu in (RESOURCE + "?session=1", RESOURCE + "#x"):
        assert refused(await dpop_post(http, token, forged_proof(call_key, clock(), token, htu=htu)))


async def test_mcp_dpop_missing_ath(
    http: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    assert refused(await dpop_post(http, token, forged_proof(call_key, clock(), token, ath=...)))


async def test_mcp_dpop_wrong_ath(
    http: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token, other = bound(), bound()
    # A proof made for another token of the same key: the token lifted and paired with a stale proof.
    assert refused(await dpop_post(http, token, proof_for(call_key, clock, other)))


async def test_mcp_dpop_stale_iat(
    http: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    proof = dpop_proof(call_key, htm="POST", htu=RESOURCE, now=clock() - 61, access_token=token)
    assert refused(await dpop_post(http, token, proof))


async def test_mcp_dpop_future_iat_beyond_leeway(
    http: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    proof = dpop_proof(call_key, htm="POST", htu=RESOURCE, now=clock() + 61, access_token=token)
    assert refused(await dpop_post(http, token, proof))


async def test_mcp_dpop_alg_none(
    http: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    head = {"typ": "dpop+jwt", "alg": "none", "jwk": public_members(call_key.public_key())}
    claims = {
        "jti": "n",
        "htm": "POST",
        "htu": RESOURCE,
        "iat": int(clock()),
        "ath": keys.access_token_hash(token),
    }
    assert refused(await dpop_post(http, token, f"{segment(head)}.{segment(claims)}."))


async def test_mcp_dpop_hs256(
    http: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    head = {"typ": "dpop+jwt", "alg": "HS256", "jwk": public_members(call_key.public_key())}
    claims = {
        "jti": "h",
        "htm": "POST",
        "htu": RESOURCE,
        "iat": int(clock()),
        "ath": keys.access_token_hash(token),
    }
    signing_input = f"{segment(head)}.{segment(claims)}"
    mac = hmac.new(b"k" * 32, signing_input.encode(), hashlib.sha256).digest()
    assert refused(await dpop_post(http, token, f"{signing_input}.{b64(mac)}"))


async def test_mcp_dpop_rs256_with_ec_key(
    http: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    rsa = generate_key("RS256")
    head = {"typ": "dpop+jwt", "alg": "RS256", "jwk": public_members(call_key.public_key())}
    claims = {
        "jti": "r",
        "htm": "POST",
        "htu": RESOURCE,
        "iat": int(clock()),
        "ath": keys.access_token_hash(token),
    }
    signing_input = f"{segment(head)}.{segment(claims)}"
    assert refused(
        await dpop_post(http, token, f"{signing_input}.{b64(signature_bytes(rsa, signing_input.encode()))}")
    )


async def test_mcp_dpop_private_d_in_jwk(
    http: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    jwk = {**public_members(call_key.public_key()), "d": b64(b"\x05" * 32)}
    assert refused(await dpop_post(http, token, forged_proof(call_key, clock(), token, header={"jwk": jwk})))


async def test_mcp_dpop_wrong_typ(
    http: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    assert refused(
        await dpop_post(http, token, forged_proof(call_key, clock(), token, header={"typ": "JWT"}))
    )


async def test_mcp_dpop_proof_over_the_size_cap(
    http: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    proof = forged_proof(call_key, clock(), token, pad="p" * keys.MAX_PROOF_SIZE)
    assert refused(await dpop_post(http, token, proof))


async def test_mcp_dpop_refusal_is_audited_without_the_proof(
    http: httpx2.AsyncClient,
    bound: Callable[..., str],
    call_key: KeyPair,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = bound()
    proof = dpop_proof(call_key, htm="GET", htu=RESOURCE, now=clock(), access_token=token)
    with caplog.at_level("INFO", logger="voicebank.audit"):
        assert refused(await dpop_post(http, token, proof))
    lines = [r.getMessage() for r in caplog.records if r.name == "voicebank.audit"]
    assert any('"dpop_wrong_htm"' in line for line in lines), lines
    assert not any(proof in line or token in line for line in caplog.messages)


async def test_insufficient_scope_challenge_names_the_dpop_scheme(
    http: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    response = await dpop_post(http, token, proof_for(call_key, clock, token), tool="make_payment")
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        f'DPoP error="insufficient_scope", scope="transact", {ALGS}, resource_metadata="{METADATA}"'
    )


# --- MCP_REQUIRE_DPOP and nonces --------------------------------------------------------------


@pytest.fixture
def app_with(tmp_path: Path, verifier: Verifier, engine: Engine, clock: FakeClock) -> Callable[..., Any]:
    def build(**settings: Any) -> Starlette:
        values: dict[str, Any] = {
            "mcp_issuer_url": ISSUER, "mcp_resource_url": RESOURCE, "voicebank_state": tmp_path,
            "redis_url": None,
        }  # fmt: skip
        return create_app(McpSettings(**(values | settings)), verifier=verifier, engine=engine, clock=clock)

    return build


@pytest.fixture
async def strict(app_with: Callable[..., Starlette]) -> AsyncIterator[httpx2.AsyncClient]:
    async with running(app_with(mcp_require_dpop=True)) as app, http_client(app) as client:
        yield client


def test_require_dpop_defaults_to_the_mode(tmp_path: Path) -> None:
    assert McpSettings(voicebank_mode="prod", voicebank_state=tmp_path).require_dpop is True
    assert McpSettings(voicebank_mode="dev", voicebank_state=tmp_path).require_dpop is False
    assert McpSettings(voicebank_mode="prod", mcp_require_dpop=False).require_dpop is False
    assert McpSettings(voicebank_mode="dev", mcp_require_dpop=True).require_dpop is True


async def test_required_dpop_refuses_bearer_tokens(strict: httpx2.AsyncClient, mint: Mint) -> None:
    response = await post(strict, mint(), rpc("get_balance", {}))
    assert refused(response, f'DPoP error="invalid_token", {ALGS}, resource_metadata="{METADATA}"')
    document = (await strict.get("/.well-known/oauth-protected-resource")).json()
    assert document["dpop_bound_access_tokens_required"] is True


async def test_required_dpop_challenges_with_dpop(strict: httpx2.AsyncClient) -> None:
    response = await post(strict, None, rpc("get_balance", {}))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == f'DPoP {ALGS}, resource_metadata="{METADATA}"'


async def test_required_dpop_accepts_bound_tokens(
    strict: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    assert ok(await dpop_post(strict, token, proof_for(call_key, clock, token)))


@pytest.fixture(params=["memory", "redis"])
async def nonced(
    request: pytest.FixtureRequest, app_with: Callable[..., Starlette]
) -> AsyncIterator[httpx2.AsyncClient]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    async with (
        running(app_with(dpop_nonce="required", redis_url=redis_url)) as app,
        http_client(app) as client,
    ):
        yield client


async def test_mcp_dpop_nonce_missing_when_required(
    nonced: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    first = await dpop_post(nonced, token, proof_for(call_key, clock, token))
    assert refused(first, f'DPoP error="use_dpop_nonce", {ALGS}, resource_metadata="{METADATA}"')
    nonce = first.headers["dpop-nonce"]
    second = await dpop_post(nonced, token, proof_for(call_key, clock, token, nonce=nonce))
    assert ok(second)
    assert second.headers["dpop-nonce"] == nonce  # every answer carries the current nonce


async def test_mcp_dpop_stale_nonce(
    nonced: httpx2.AsyncClient, bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    token = bound()
    nonce = (await dpop_post(nonced, token, proof_for(call_key, clock, token))).headers["dpop-nonce"]
    clock.advance(600)  # two windows later; a new token, as the old one has expired
    token = bound()
    stale = await dpop_post(nonced, token, proof_for(call_key, clock, token, nonce=nonce))
    assert refused(stale, f'DPoP error="use_dpop_nonce", {ALGS}, resource_metadata="{METADATA}"')
    assert stale.headers["dpop-nonce"] != nonce


async def test_mcp_nonces_and_replays_hold_across_replicas(
    redis_url: str,
    app_with: Callable[..., Starlette],
    bound: Callable[..., str],
    call_key: KeyPair,
    clock: FakeClock,
) -> None:
    settings = {"dpop_nonce": "required", "redis_url": redis_url}
    async with (
        running(app_with(**settings)) as one,
        running(app_with(**settings)) as two,
        http_client(one) as a,
        http_client(two) as b,
    ):
        token = bound()
        nonce = (await dpop_post(a, token, proof_for(call_key, clock, token))).headers["dpop-nonce"]
        proof = proof_for(call_key, clock, token, nonce=nonce)
        assert ok(await dpop_post(b, token, proof))  # replica two takes replica one's nonce
        assert refused(await dpop_post(a, token, proof))  # and replica one refuses the proof two saw


async def test_proof_store_down_is_an_outage(
    app_with: Callable[..., Starlette], bound: Callable[..., str], call_key: KeyPair, clock: FakeClock
) -> None:
    async with running(app_with(redis_url="redis://127.0.0.1:1/0")) as app, http_client(app) as client:
        token = bound()
        response = await dpop_post(client, token, proof_for(call_key, clock, token))
        assert response.status_code == 503
        assert response.json() == {"error": "temporarily_unavailable"}
