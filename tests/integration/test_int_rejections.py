"""The verifier's rejection list end to end over HTTP, with tokens derived from real issuer tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
import pytest_asyncio

from keys import client_assertion
from tests.support.issuer import TOKEN_ENDPOINT
from tests.support.mcp import METADATA
from tests.support.stack import (
    INVALID_TOKEN,
    Stack,
    b64_json,
    bound,
    running_stack,
    segment,
    snapshot,
    with_claims,
    with_header,
)


@dataclass
class Tokens:
    """Real tokens of one session, as the issuer handed them out."""

    transact: str
    read: str
    grant: str
    admin: str
    refresh: str
    assertion: str


async def real_tokens(stack: Stack) -> Tokens:
    tokens = await stack.tokens()
    exchange = await stack.issuer_http.post(
        "/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": await stack.session_grant(),
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "scope": "read",
            **_assertion(stack),
        },
    )
    assert exchange.status_code == 200, exchange.text
    return Tokens(
        transact=await tokens.transact_token(bound("make_payment", stack.payment("1.00", "after-rejection"))),
        read=await tokens.get_token("read"),
        grant=await stack.session_grant(),
        admin=await stack.bearer("admin", "keys:admin"),
        refresh=exchange.json()["refresh_token"],
        assertion=_assertion(stack)["client_assertion"],
    )


def _assertion(stack: Stack) -> dict[str, str]:
    key = stack.client_keys["orchestrator"]
    return {
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": client_assertion("orchestrator", key, TOKEN_ENDPOINT, stack.clock()),
    }


def flip_signature(token: str) -> str:
    header, payload, signature = token.split(".")
    middle = len(signature) // 2
    swapped = "A" if signature[middle] != "A" else "B"
    return ".".join([header, payload, signature[:middle] + swapped + signature[middle + 1 :]])


def hs256_with_public_key(token: str, stack: Stack) -> str:
    """The classic confusion: HMAC-sign with the issuer's public key as the secret."""
    header = b64_json(segment(token, 0) | {"alg": "HS256"})
    payload = token.split(".")[1]
    jwk = json.dumps(next(iter(stack.client_keys.values())).public_jwk()).encode()
    mac = hmac.new(jwk, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


Build = Callable[[Tokens, Stack], str]

CASES: dict[str, tuple[Build, str]] = {
    "payload tampered (another user)": (lambda t, s: with_claims(t.transact, sub="bob"), "bad_signature"),
    "scope escalated": (lambda t, s: with_claims(t.read, scope="read transact configure"), "bad_signature"),
    "signature altered": (lambda t, s: flip_signature(t.transact), "bad_signature"),
    "signature of another token": (
        lambda t, s: ".".join(t.transact.split(".")[:2] + t.read.split(".")[2:]),
        "bad_signature",
    ),
    "signature stripped": (lambda t, s: t.transact.rsplit(".", 1)[0] + ".", "bad_signature"),
    "alg none": (lambda t, s: with_header(t.transact, alg="none").rsplit(".", 1)[0] + ".", "unsupported_alg"),
    "alg HS256 with the public key": (lambda t, s: hs256_with_public_key(t.transact, s), "unsupported_alg"),
    "alg swapped to RS256": (lambda t, s: with_header(t.transact, alg="RS256"), "unsupported_alg"),
    "alg swapped to EdDSA": (lambda t, s: with_header(t.transact, alg="EdDSA"), "unsupported_alg"),
    "header jku": (lambda t, s: with_header(t.transact, jku="https://evil.test/jwks"), "forbidden_header"),
    "header jwk": (
        lambda t, s: with_header(t.transact, jwk=s.client_keys["admin"].public_jwk()),
        "forbidden_header",
    ),
    "header x5u": (lambda t, s: with_header(t.transact, x5u="https://evil.test/cert"), "forbidden_header"),
    "header x5c": (lambda t, s: with_header(t.transact, x5c=["MIIB"]), "forbidden_header"),
    "header crit": (lambda t, s: with_header(t.transact, crit=["exp"]), "forbidden_header"),
    "typ changed": (lambda t, s: with_header(t.transact, typ="JWT"), "wrong_typ"),
    "kid missing": (lambda t, s: with_header(t.transact, kid=None), "malformed"),
    "kid unknown": (lambda t, s: with_header(t.transact, kid="x" * 43), "unknown_kid"),
    "session grant as access token": (lambda t, s: t.grant, "wrong_typ"),
    "issuer bearer (wrong audience)": (lambda t, s: t.admin, "wrong_aud"),
    "client assertion": (lambda t, s: t.assertion, "wrong_typ"),
    "refresh token": (lambda t, s: t.refresh, "malformed"),
    "two segments": (lambda t, s: t.transact.rsplit(".", 1)[0], "malformed"),
    "too large": (lambda t, s: with_claims(t.transact, pad="x" * 9000), "too_large"),
}


def audit_reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [json.loads(r.getMessage())["reason"] for r in caplog.records if r.name == "voicebank.audit"]


async def refused(stack: Stack, token: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    """POST a valid payment with `token`: 401 with the challenge, no tool ran; the audit reasons."""
    before = snapshot(stack.engine)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="voicebank.audit"):
        response = await stack.post(token, "make_payment", stack.payment("10.00", "rejected-1"))
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == INVALID_TOKEN
    assert response.json() == {"error": "invalid_token"}  # the client learns nothing more
    assert snapshot(stack.engine) == before
    return audit_reasons(caplog)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One stack for the cases below: none of them moves its clock, each checks the database itself."""
    async with running_stack(tmp_path_factory.mktemp("rejections")) as stack:
        yield stack


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("case", list(CASES))
async def test_a_derived_token_is_refused_with_401_and_no_tool_runs(
    shared: Stack, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    stack = shared
    tokens = await real_tokens(stack)
    build, reason = CASES[case]
    assert await refused(stack, build(tokens, stack), caplog) == [reason]
    # The untouched transact token still pays: the refusal was about the derived token alone.
    paid = await stack.call(tokens.transact, "make_payment", **stack.payment("1.00", "after-rejection"))
    assert paid["status"] == "completed"


async def test_expired_and_not_yet_valid_by_the_clock(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    tokens = await real_tokens(stack)
    claims = segment(tokens.transact, 1)
    stack.clock.now = claims["iat"] - 61  # the MCP server's clock runs behind by more than the leeway
    assert await refused(stack, tokens.transact, caplog) == ["not_yet_valid"]
    stack.clock.now = claims["exp"] + 60  # past exp plus the leeway
    assert await refused(stack, tokens.transact, caplog) == ["expired"]
    stack.clock.now = segment(tokens.read, 1)["exp"] + 60
    assert await refused(stack, tokens.read, caplog) == ["expired"]


async def test_no_token_or_another_scheme_gets_the_bare_challenge(stack: Stack) -> None:
    tokens = await real_tokens(stack)
    before = snapshot(stack.engine)
    bare = f'Bearer resource_metadata="{METADATA}"'
    missing = await stack.post(None, "make_payment", stack.payment("10.00", "no-token"))
    assert (missing.status_code, missing.headers["www-authenticate"]) == (401, bare)
    headers = {"authorization": f"Basic {tokens.transact}", "accept": "application/json, text/event-stream"}
    basic = await stack.mcp_http.post("/mcp", json={}, headers=headers)
    assert (basic.status_code, basic.headers["www-authenticate"]) == (401, bare)
    assert snapshot(stack.engine) == before


async def test_a_non_ascii_token_is_refused(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    tokens = await real_tokens(stack)
    before = snapshot(stack.engine)
    raw = f"Bearer {tokens.transact[:-2]}".encode() + "é".encode("latin-1")
    headers = {b"authorization": raw, b"accept": b"application/json, text/event-stream"}
    with caplog.at_level(logging.INFO, logger="voicebank.audit"):
        response = await stack.mcp_http.post("/mcp", json={}, headers=headers)
    assert (response.status_code, response.headers["www-authenticate"]) == (401, INVALID_TOKEN)
    assert audit_reasons(caplog) == ["malformed"]
    assert snapshot(stack.engine) == before
