"""The call's DPoP key: proofs with the right nonce per server, nothing of the key in its repr."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from orchestrator._tokens._dpop import CallKey, nonce_challenge

ISSUER = "http://127.0.0.1:8000/token"
MCP = "http://127.0.0.1:8001/mcp"


def claims(proof: str) -> dict[str, object]:
    payload = proof.split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def test_repr_names_the_thumbprint_only() -> None:
    key = CallKey()
    assert repr(key) == f"CallKey(jkt={key.jkt!r})"
    assert "private" not in repr(key).lower()


def test_only_dpop_algorithms() -> None:
    assert CallKey("EdDSA").jkt
    with pytest.raises(ValueError, match="ES256 or EdDSA"):
        CallKey("RS256")


def test_each_server_gets_its_own_last_nonce() -> None:
    key = CallKey(clock=lambda: 1_700_000_000.0)
    assert "nonce" not in claims(key.proof("POST", ISSUER))
    assert key.learn_nonce(ISSUER, httpx.Headers({"DPoP-Nonce": "issuer-n1"}))
    assert not key.learn_nonce(ISSUER, httpx.Headers({"DPoP-Nonce": "issuer-n1"}))  # not new
    assert key.learn_nonce(MCP, httpx.Headers({"dpop-nonce": "mcp-n1"}))
    assert claims(key.proof("POST", ISSUER))["nonce"] == "issuer-n1"
    assert claims(key.proof("POST", MCP + "?x=1"))["nonce"] == "mcp-n1"
    assert claims(key.proof("POST", MCP))["iat"] == 1_700_000_000


@pytest.mark.parametrize("nonce", ["", "n" * 65, "bad\nnonce", "é"])
def test_a_malformed_nonce_is_not_kept(nonce: str) -> None:
    key = CallKey()
    assert not key.learn_nonce(MCP, {"dpop-nonce": nonce})
    assert not key.learn_nonce(MCP, {})
    assert "nonce" not in claims(key.proof("POST", MCP))


def test_nonce_challenges_of_issuer_and_resource() -> None:
    nonce = {"dpop-nonce": "n"}
    assert nonce_challenge(400, nonce, "use_dpop_nonce")
    assert not nonce_challenge(400, nonce, "invalid_dpop_proof")
    assert not nonce_challenge(400, {}, "use_dpop_nonce")
    challenge = {**nonce, "www-authenticate": 'DPoP error="use_dpop_nonce", algs="ES256 EdDSA"'}
    assert nonce_challenge(401, challenge, None)
    assert not nonce_challenge(401, {**nonce, "www-authenticate": 'Bearer error="use_dpop_nonce"'}, None)
    assert not nonce_challenge(403, challenge, None)
