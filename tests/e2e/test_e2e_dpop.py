"""DPoP across real processes: two MCP replicas on one Redis, in prod mode (DPoP required)."""

from __future__ import annotations

import httpx
import pytest

from keys import load_client_key
from orchestrator._tokens._issuer_client import IssuerClient
from orchestrator._tokens._manager import TokenManager
from orchestrator._tokens._retry import RetryPolicy
from tests.support.e2e import Stack, issuer_client, mcp_post, new_call, session_tokens, tool_result

pytestmark = pytest.mark.e2e


async def test_a_proof_replayed_on_the_other_mcp_replica_is_refused(stack: Stack) -> None:
    async with session_tokens(stack, target=0) as (tokens, _, key):
        token = await tokens.get_token("read")
        proof = key.proof("POST", stack.resource, access_token=token)
        assert tool_result(await mcp_post(stack.mcp_urls[0], token, "list_payees", {}, proof=proof))["payees"]
        # The same token and the very same proof, on the other replica: its jti is spent in the shared Redis.
        replayed = await mcp_post(stack.mcp_urls[1], token, "list_payees", {}, proof=proof)
        assert replayed.status_code == 401
        assert 'DPoP error="invalid_dpop_proof"' in replayed.headers["www-authenticate"]
        assert 'algs="ES256 EdDSA"' in replayed.headers["www-authenticate"]
        # A fresh proof by the call's key works on either replica.
        for url in stack.mcp_urls:
            fresh = await mcp_post(url, token, "list_payees", {}, dpop=key, resource=stack.resource)
            assert tool_result(fresh)["payees"]


async def test_a_bound_token_without_its_key_is_refused_by_every_replica(stack: Stack) -> None:
    async with session_tokens(stack, target=1) as (tokens, _, _key):
        token = await tokens.get_token("read")
        for url in stack.mcp_urls:
            as_bearer = await mcp_post(url, token, "list_payees", {})
            assert as_bearer.status_code == 401
            assert as_bearer.headers["www-authenticate"].startswith('DPoP error="invalid_token"')


async def test_prod_mode_refuses_unbound_tokens(stack: Stack) -> None:
    http, _ = issuer_client(stack, target=0)
    async with http:
        identity = await new_call(http, stack)
        client = IssuerClient(
            http,
            issuer=stack.issuer,
            client_id="orchestrator",
            key=load_client_key(stack.state, "orchestrator"),
            retry=RetryPolicy(attempts=1),
        )
        tokens = TokenManager(client)
        await tokens.start(identity.session_grant, "read")  # no proof: a bearer token
        token = await tokens.get_token("read")
    for url in stack.mcp_urls:
        answer = await mcp_post(url, token, "list_payees", {})
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith('DPoP error="invalid_token"')
    metadata = await http_get_metadata(stack)
    assert metadata["dpop_bound_access_tokens_required"] is True
    assert metadata["dpop_signing_alg_values_supported"] == ["ES256", "EdDSA"]


async def http_get_metadata(stack: Stack) -> dict[str, object]:
    async with httpx.AsyncClient(timeout=10.0) as http:
        response = await http.get(stack.resource.replace("/mcp", "/.well-known/oauth-protected-resource/mcp"))
    assert response.status_code == 200
    document: dict[str, object] = response.json()
    return document
