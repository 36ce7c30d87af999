"""A DPoP-bound call's payments: the transact token, /bc-authorize and the CIBA poll prove the call's key."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from keys import KeyPair, StaticKeys, Verifier, VerifyPolicy, dpop_proof, generate_key, thumbprint
from tests.support.issuer import ISSUER, RESOURCE, TOKEN_ENDPOINT, Harness, payment
from tests.support.registry import CIBA, TOKEN_EXCHANGE

BC_AUTHORIZE = ISSUER + "/bc-authorize"


@pytest.fixture(scope="module")
def call_key() -> KeyPair:
    return generate_key("ES256")


def _proof(h: Harness, key: KeyPair, htu: str = TOKEN_ENDPOINT) -> str:
    return dpop_proof(key, htm="POST", htu=htu, now=h.clock())


async def _bound_session(h: Harness, key: KeyPair) -> tuple[str, str]:
    """A session exchanged with a proof: its id and the refresh token of its bound family."""
    grant = (await h.session())["session_grant"]
    form = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": grant,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "scope": "read",
        **h.auth("orchestrator"),
    }
    answer = await h.http.post("/token", data=form, headers={"DPoP": _proof(h, key)})
    assert answer.status_code == 200, answer.text
    refresh: str = answer.json()["refresh_token"]
    sid: str = (await h.app.state.issuer.refresh.peek(refresh)).sid
    return sid, refresh


async def _claims(h: Harness, token: str) -> dict[str, Any]:
    jwks = (await h.http.get("/.well-known/jwks.json")).json()
    return Verifier(StaticKeys(jwks), VerifyPolicy(ISSUER, RESOURCE), clock=h.clock).verify(token)


def _error(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    error: str = response.json()["error"]
    return error


async def test_a_bound_calls_transact_token_is_bound_to_its_key(issuer: Harness, call_key: KeyPair) -> None:
    _, refresh = await _bound_session(issuer, call_key)
    form = {"grant_type": "refresh_token", "refresh_token": refresh, "scope": "transact"}
    form |= {"authorization_details": payment(), **issuer.auth("orchestrator")}
    unproved = await issuer.http.post("/token", data=form)
    assert _error(unproved) == "invalid_dpop_proof"
    form |= issuer.auth("orchestrator")
    answer = await issuer.http.post("/token", data=form, headers={"DPoP": _proof(issuer, call_key)})
    assert answer.status_code == 200, answer.text
    assert answer.json()["token_type"] == "DPoP"
    claims = await _claims(issuer, answer.json()["access_token"])
    assert claims["cnf"] == {"jkt": thumbprint(call_key.public_jwk())}
    assert claims["authorization_details"][0]["amount"] == "25.00"


async def test_bc_authorize_and_the_poll_prove_the_calls_key(issuer: Harness, call_key: KeyPair) -> None:
    sid, _ = await _bound_session(issuer, call_key)
    thief = generate_key("ES256")
    details = payment(amount="750.00")
    assert _error(await issuer.bc_authorize(sid, details)) == "invalid_dpop_proof"  # no proof
    stolen = {"DPoP": _proof(issuer, thief, BC_AUTHORIZE)}
    form = {"scope": "transact", "login_hint": sid, "authorization_details": details}
    by_thief = await issuer.http.post(
        "/bc-authorize", data={**form, **issuer.auth("orchestrator")}, headers=stolen
    )
    assert _error(by_thief) == "invalid_dpop_proof"
    proved = {"DPoP": _proof(issuer, call_key, BC_AUTHORIZE)}
    answer = await issuer.http.post(
        "/bc-authorize", data={**form, **issuer.auth("orchestrator")}, headers=proved
    )
    assert answer.status_code == 200, answer.text
    auth_req_id = answer.json()["auth_req_id"]
    assert (await issuer.decide(auth_req_id, "approve")).status_code == 200
    issuer.clock.advance(2)
    poll = {"grant_type": CIBA, "auth_req_id": auth_req_id}
    unproved = await issuer.http.post("/token", data={**poll, **issuer.auth("orchestrator")})
    assert _error(unproved) == "invalid_dpop_proof"  # refused before the one token is handed out
    answer = await issuer.http.post(
        "/token", data={**poll, **issuer.auth("orchestrator")}, headers={"DPoP": _proof(issuer, call_key)}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["token_type"] == "DPoP"
    claims = await _claims(issuer, answer.json()["access_token"])
    assert claims["cnf"] == {"jkt": thumbprint(call_key.public_jwk())}
    assert claims["authorization_details"][0]["amount"] == "750.00"
