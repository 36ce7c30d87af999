"""Bearer auth over HTTP: rejections are 401 with the challenge, scopes 403, transact single-use."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import httpx2
import pytest
from mcp.shared.exceptions import MCPError
from sqlalchemy import Engine
from starlette.applications import Starlette

from keys import generate_key
from mcp_server import TOOL_SCOPES, Bank
from tests.support.clock import FakeClock
from tests.support.issuer import ISSUER, RESOURCE
from tests.support.mcp import METADATA, Mint, audit_lines, mcp_client, movements, post, rpc, scrape

INVALID = f'Bearer error="invalid_token", resource_metadata="{METADATA}"'


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unb64(segment: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return decoded


def with_header(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    return ".".join([b64(unb64(header) | changes), payload, signature])


def balance_of(bank: Bank, user: str, kind: str) -> str:
    rows = bank.get_balance(user, kind)["accounts"]
    return next(a["balance"] for a in rows if a["status"] == "open")


@pytest.fixture
def payment(bank: Bank) -> dict[str, Any]:
    """Arguments of a valid payment from alice's checking account."""
    checking = next(a for a in bank.get_balance("alice", "checking")["accounts"])["account_id"]
    payee = bank.list_payees("alice")["payees"][0]["payee_id"]
    return {"from_account_id": checking, "payee_id": payee, "amount": "10.00", "idempotency_key": "auth-1"}


async def test_protected_resource_metadata(http: httpx2.AsyncClient) -> None:
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
        response = await http.get(path)
        assert response.status_code == 200
        document = response.json()
        assert document["resource"] == RESOURCE
        assert document["authorization_servers"] == [ISSUER]
        assert set(document["scopes_supported"]) == {"read", "transact", "configure"}
        assert document["bearer_methods_supported"] == ["header"]


# "Bearer" without a token is a malformed credential (400): test_regression_malformed_credentials_are_400.
@pytest.mark.parametrize("authorization", [None, "Basic YWxpY2U6cHc=", "Token abc"])
async def test_no_bearer_token_is_a_plain_challenge(
    http: httpx2.AsyncClient, payment: dict[str, Any], authorization: str | None
) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    response = await post(http, None, rpc("make_payment", payment), **headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == f'Bearer resource_metadata="{METADATA}"'


async def test_a_valid_token_passes(http: httpx2.AsyncClient, mint: Mint, payment: dict[str, Any]) -> None:
    response = await post(
        http, mint(scope="transact", bound=("make_payment", payment)), rpc("make_payment", payment)
    )
    assert response.status_code == 200, response.text
    assert response.json()["result"]["structuredContent"]["status"] == "completed"


def _rejections(mint: Mint, clock: FakeClock) -> dict[str, tuple[str, str]]:
    """Bad tokens by name: (token, the reason the audit log must give)."""
    now = int(clock())
    good = mint(scope="transact")
    other = mint("bob", scope="transact")
    header, payload, signature = good.split(".")
    stranger = generate_key("ES256")
    return {
        "swapped signature": (".".join([header, payload, other.split(".")[2]]), "bad_signature"),
        "swapped payload": (".".join([header, other.split(".")[1], signature]), "bad_signature"),
        "expired": (mint(scope="transact", iat=now - 400, nbf=now - 400, exp=now - 120), "expired"),
        "not yet valid": (mint(scope="transact", nbf=now + 600, exp=now + 660), "not_yet_valid"),
        "wrong audience": (mint(scope="transact", aud="http://127.0.0.1:9999/mcp"), "wrong_aud"),
        "wrong issuer": (mint(scope="transact", iss="http://evil.example"), "wrong_iss"),
        "wrong typ": (mint(scope="transact", typ="JWT"), "wrong_typ"),
        "session grant typ": (mint(scope="transact", typ="session-grant+jwt"), "wrong_typ"),
        "alg none": (".".join([b64(unb64(header) | {"alg": "none"}), payload, ""]), "unsupported_alg"),
        "alg HS256": (with_header(good, alg="HS256"), "unsupported_alg"),
        "jku header": (with_header(good, jku="http://evil.example/jwks"), "forbidden_header"),
        "jwk header": (with_header(good, jwk=stranger.public_jwk()), "forbidden_header"),
        "x5u header": (with_header(good, x5u="http://evil.example/cert"), "forbidden_header"),
        "x5c header": (with_header(good, x5c=["MIIB"]), "forbidden_header"),
        "crit header": (with_header(good, crit=["exp"]), "forbidden_header"),
        "unknown kid": (mint(scope="transact", key=stranger), "unknown_kid"),
        "missing jti": (mint(scope="transact", without=("jti",)), "missing_claim"),
        "missing sub": (mint(scope="transact", without=("sub",)), "missing_claim"),
        "missing client_id": (mint(scope="transact", without=("client_id",)), "missing_claim"),
        "missing scope": (mint(scope="transact", without=("scope",)), "missing_claim"),
        "missing exp": (mint(scope="transact", without=("exp",)), "missing_claim"),
        "string exp": (mint(scope="transact", exp=str(now + 60)), "invalid_claim"),
        "null sub": (mint(scope="transact", sub=None), "invalid_claim"),
        "number scope": (mint(scope="transact", claims={"scope": 7}), "invalid_claim"),
        "lifetime too long": (mint(scope="transact", exp=now + 7200), "lifetime_too_long"),
        "too large": (mint(scope="transact", pad="x" * 9000), "too_large"),
        "not a jwt": ("not-a-jwt", "malformed"),
        "four segments": (good + ".x", "malformed"),
        "garbage segments": ("a.b.c", "malformed"),
    }


REJECTIONS = [
    "swapped signature",
    "swapped payload",
    "expired",
    "not yet valid",
    "wrong audience",
    "wrong issuer",
    "wrong typ",
    "session grant typ",
    "alg none",
    "alg HS256",
    "jku header",
    "jwk header",
    "x5u header",
    "x5c header",
    "crit header",
    "unknown kid",
    "missing jti",
    "missing sub",
    "missing client_id",
    "missing scope",
    "missing exp",
    "string exp",
    "null sub",
    "number scope",
    "lifetime too long",
    "too large",
    "not a jwt",
    "four segments",
    "garbage segments",
]


@pytest.mark.parametrize("name", REJECTIONS)
async def test_every_rejection_is_401_with_the_challenge_and_moves_nothing(
    http: httpx2.AsyncClient,
    mint: Mint,
    clock: FakeClock,
    bank: Bank,
    engine: Engine,
    payment: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    name: str,
) -> None:
    caplog.set_level(logging.INFO, logger="voicebank.audit")
    token, reason = _rejections(mint, clock)[name]
    response = await post(http, token, rpc("make_payment", payment))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == INVALID
    assert response.json() == {"error": "invalid_token"}
    assert balance_of(bank, "alice", "checking") == "2450.13"
    assert movements(engine) == 0
    (line,) = audit_lines(caplog)
    assert (line["outcome"], line["reason"]) == ("denied", reason)
    assert token not in caplog.text


@pytest.mark.parametrize("scope", ["read", "transact", "configure", "read configure", "openid"])
@pytest.mark.parametrize("tool", sorted(TOOL_SCOPES))
async def test_scope_matrix(
    http: httpx2.AsyncClient, mint: Mint, engine: Engine, scope: str, tool: str
) -> None:
    needed = TOOL_SCOPES[tool]
    response = await post(http, mint(scope=scope), rpc(tool, {}))
    if needed == "transact" and needed in scope.split():
        # Allowed by scope, but a transact token without authorization details moves no money.
        assert response.status_code == 403
        assert 'error="insufficient_authorization_details"' in response.headers["www-authenticate"]
    elif needed in scope.split():
        # Allowed through; the empty arguments are then refused by the tool itself.
        assert response.status_code == 200
    else:
        assert response.status_code == 403
        assert response.headers["www-authenticate"] == (
            f'Bearer error="insufficient_scope", scope="{needed}", resource_metadata="{METADATA}"'
        )
    assert movements(engine) == 0


async def test_403_is_decided_before_the_tool_runs(
    http: httpx2.AsyncClient, mint: Mint, bank: Bank, engine: Engine, payment: dict[str, Any]
) -> None:
    response = await post(http, mint(scope="read configure"), rpc("make_payment", payment))
    assert response.status_code == 403
    assert balance_of(bank, "alice", "checking") == "2450.13"
    assert movements(engine) == 0


async def test_a_batch_is_checked_message_by_message(
    http: httpx2.AsyncClient, mint: Mint, engine: Engine, payment: dict[str, Any]
) -> None:
    body = [rpc("get_balance", {}), rpc("make_payment", payment)]
    response = await post(http, mint(scope="read"), body)
    assert response.status_code == 403
    assert 'scope="transact"' in response.headers["www-authenticate"]
    assert movements(engine) == 0


async def test_unknown_tool_goes_to_fastmcp(http: httpx2.AsyncClient, mint: Mint) -> None:
    response = await post(http, mint(scope="read"), rpc("drop_tables", {}))
    assert response.status_code not in (401, 403, 500)


async def test_transact_token_is_single_use(
    app: Starlette, http: httpx2.AsyncClient, mint: Mint, bank: Bank, engine: Engine, payment: dict[str, Any]
) -> None:
    token = mint(scope="transact", bound=("make_payment", payment))
    # Discovery and listing do not spend it.
    async with mcp_client(app, token) as client:
        assert len(await client.list_tools()) == 7
        first = await client.call_tool("make_payment", payment)
    assert first.structured_content is not None
    again = await post(http, token, rpc("make_payment", payment))
    assert again.status_code == 401
    assert again.headers["www-authenticate"] == INVALID
    assert balance_of(bank, "alice", "checking") == "2440.13"
    assert movements(engine) == 1


async def test_read_tokens_are_reusable(http: httpx2.AsyncClient, mint: Mint) -> None:
    token = mint(scope="read")
    for _ in range(3):
        assert (await post(http, token, rpc("list_payees", {}))).status_code == 200


async def test_mcp_client_sees_http_errors_as_mcp_errors(app: Starlette, mint: Mint) -> None:
    # The SDK client reports 401/403 as a generic MCPError; the status is only on the HTTP response.
    async with mcp_client(app, mint(scope="read")) as client:
        with pytest.raises(MCPError):
            await client.call_tool("update_notification_settings", {"channel": "sms"})


async def test_user_isolation_whatever_the_ids(app: Starlette, mint: Mint, bank: Bank) -> None:
    bobs = bank.get_balance("bob")["accounts"]
    bob_checking = next(a["account_id"] for a in bobs if a["type"] == "checking")
    bob_payee = bank.list_payees("bob")["payees"][0]["payee_id"]
    alice_checking = next(a for a in bank.get_balance("alice", "checking")["accounts"])["account_id"]
    alice_payee = bank.list_payees("alice")["payees"][0]["payee_id"]
    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("read", "list_transactions", {"account_id": bob_checking}),
        ("transact", "make_payment", {"from_account_id": bob_checking, "payee_id": alice_payee}),
        ("transact", "make_payment", {"from_account_id": bob_checking, "payee_id": bob_payee}),
        ("transact", "transfer_between_accounts", {"from_account_id": bob_checking, "to_account_id": alice_checking}),  # noqa: E501
        ("transact", "transfer_between_accounts", {"from_account_id": alice_checking, "to_account_id": bob_checking}),  # noqa: E501
    ]  # fmt: skip
    for scope, tool, arguments in attempts:
        if scope == "transact":
            arguments |= {"amount": "5.00", "idempotency_key": f"iso-{tool}-{len(arguments)}"}
        bound = (tool, arguments) if scope == "transact" else None
        async with mcp_client(app, mint("alice", scope, bound=bound)) as client:
            result = await client.call_tool(tool, arguments, raise_on_error=False)
        assert result.is_error
        assert result.content[0].text in ("Account not found.", "Payee not found.")  # type: ignore[union-attr]
    async with mcp_client(app, mint("alice")) as client:
        seen = (await client.call_tool("get_balance", {})).structured_content
    assert seen is not None
    assert bob_checking not in {a["account_id"] for a in seen["accounts"]}
    assert balance_of(bank, "bob", "checking") == "980.77"
    assert balance_of(bank, "alice", "checking") == "2450.13"


async def test_audit_lines_carry_the_decision_and_never_the_token(
    app: Starlette, mint: Mint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voicebank.audit")
    token = mint("alice", "read", jti="jti-audit-1", sid="room-9")
    async with mcp_client(app, token) as client:
        await client.call_tool("get_balance", {})
    (line,) = audit_lines(caplog)
    assert set(line) == {
        "time", "service", "sub", "client_id", "act", "sid", "jti", "tool", "outcome", "reason", "latency_ms",
        "trace_id",
    }  # fmt: skip
    assert line["service"] == "mcp"
    assert (line["sub"], line["client_id"], line["act"], line["sid"], line["jti"]) == (
        "alice",
        "orchestrator",
        "orchestrator",
        "room-9",
        "jti-audit-1",
    )
    assert (line["tool"], line["outcome"], line["reason"]) == ("get_balance", "ok", None)
    assert token not in caplog.text


async def test_metrics_count_verifications_by_reason(
    app: Starlette, http: httpx2.AsyncClient, mint: Mint, clock: FakeClock
) -> None:
    now = int(clock())
    await post(http, mint(iat=now - 400, nbf=now - 400, exp=now - 120), rpc("list_payees", {}))
    await post(http, mint(), rpc("list_payees", {}))
    text = (await scrape(app)).text
    assert 'voicebank_mcp_token_verifications_total{outcome="rejected",reason="expired"} 1.0' in text
    assert 'voicebank_mcp_token_verifications_total{outcome="ok",reason="ok"} 1.0' in text
    assert 'voicebank_mcp_tool_latency_seconds_count{outcome="ok",tool="list_payees"} 1.0' in text


async def test_audit_lines_carry_the_callers_trace_id(
    http: httpx2.AsyncClient, mint: Mint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voicebank.audit")
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{trace_id}-00f067aa0ba902b7-01"
    ok = await post(http, mint(), rpc("list_payees", {}), traceparent=traceparent)
    assert ok.status_code == 200
    denied = await post(http, "not-a-token", rpc("list_payees", {}), traceparent=traceparent)
    assert denied.status_code == 401
    untraced = await post(http, mint(), rpc("list_payees", {}))
    assert untraced.status_code == 200
    first, second, third = audit_lines(caplog)
    assert (first["outcome"], second["outcome"]) == ("ok", "denied")
    assert first["trace_id"] == second["trace_id"] == trace_id
    # A caller without traceparent gets a trace of its own: the line still names one.
    assert third["trace_id"] not in (None, trace_id)
    assert len(third["trace_id"]) == 32
