"""Regressions: how the MCP endpoint answers requests that are not plain good calls (issue 10).

Found in review: a malformed credential was answered like a missing one (RFC 6750 §3.1 wants 400
`invalid_request`); a browser page from any site could call /mcp (the MCP transport spec requires refusing a
present Origin that is not allowed, against DNS rebinding); a lone UTF-16 surrogate in a tool argument on the
2026-07-28 path gave a generic 200 tool error, a FastMCP traceback in the log and no audit line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine
from starlette.applications import Starlette

from keys import Verifier
from mcp_server import Bank, McpSettings, create_app
from tests.support.lifespan import running
from tests.support.mcp import (
    METADATA,
    PROTOCOLS,
    Mint,
    audit_lines,
    call_raw,
    http_client,
    movements,
    post,
    rpc,
)

MALFORMED = f'Bearer error="invalid_request", resource_metadata="{METADATA}"'


@pytest.fixture
def payment(bank: Bank) -> dict[str, Any]:
    checking = bank.get_balance("alice", "checking")["accounts"][0]["account_id"]
    payee = bank.list_payees("alice")["payees"][0]["payee_id"]
    return {"from_account_id": checking, "payee_id": payee, "amount": "10.00", "idempotency_key": "req-1"}


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([("authorization", "Bearer")], "malformed_credentials"),
        ([("authorization", "Bearer ")], "malformed_credentials"),
        ([("authorization", "bearer    ")], "malformed_credentials"),
        ([("authorization", "Bearer abc def")], "malformed_credentials"),
        ([("authorization", "Bearer {token} extra")], "malformed_credentials"),
        (
            [("authorization", "Bearer {token}"), ("authorization", "Bearer {token}")],
            "repeated_authorization",
        ),
        ([("authorization", "Bearer {token}"), ("authorization", "Basic YTpi")], "repeated_authorization"),
    ],
)
async def test_regression_malformed_credentials_are_400_invalid_request(
    http: httpx2.AsyncClient,
    mint: Mint,
    engine: Engine,
    payment: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    headers: list[tuple[str, str]],
    reason: str,
) -> None:
    caplog.set_level(logging.INFO, logger="voicebank.audit")
    token = mint(scope="transact")
    sent = [(name, value.format(token=token)) for name, value in headers]
    base = [("accept", "application/json, text/event-stream"), ("mcp-protocol-version", PROTOCOLS[0])]
    response = await http.post("/mcp", json=rpc("make_payment", payment), headers=base + sent)
    assert response.status_code == 400
    assert response.headers["www-authenticate"] == MALFORMED
    assert response.json() == {"error": "invalid_request"}
    (line,) = audit_lines(caplog)
    assert (line["outcome"], line["reason"]) == ("denied", reason)
    assert movements(engine) == 0


async def test_regression_a_token_in_the_query_string_is_never_used(
    http: httpx2.AsyncClient, mint: Mint, engine: Engine, payment: dict[str, Any]
) -> None:
    token = mint(scope="transact")
    accept = {"accept": "application/json, text/event-stream"}
    for url in (f"/mcp?access_token={token}", f"/mcp?x=1&access_token={token}"):
        # Alone it is no credential at all (the method is not offered)...
        alone = await http.post(url, json=rpc("make_payment", payment), headers=accept)
        assert (alone.status_code, alone.headers["www-authenticate"]) == (
            401,
            f'Bearer resource_metadata="{METADATA}"',
        )
        # ...and beside a header it is two methods in one request (RFC 6750 §2): malformed.
        both = await http.post(
            url, json=rpc("make_payment", payment), headers=accept | {"authorization": f"Bearer {token}"}
        )
        assert (both.status_code, both.headers["www-authenticate"]) == (400, MALFORMED)
    assert movements(engine) == 0


@pytest.mark.parametrize("authorization", [None, "Basic YWxpY2U6cHc=", "DPoPx abc", "Token abc"])
async def test_no_credentials_and_other_schemes_stay_a_plain_401(
    http: httpx2.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    response = await post(http, None, rpc("list_payees", {}), **headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == f'Bearer resource_metadata="{METADATA}"'


async def test_regression_an_origin_not_allowed_is_403(
    http: httpx2.AsyncClient, mint: Mint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voicebank.audit")
    # Refused before the token is looked at: a bad token from a foreign page is a 403 too.
    for token in (mint(), "not-a-token"):
        response = await post(http, token, rpc("list_payees", {}), origin="http://evil.example")
        assert response.status_code == 403
        assert response.json() == {"error": "invalid_origin"}
        assert "www-authenticate" not in response.headers
    assert [line["reason"] for line in audit_lines(caplog)] == ["origin_not_allowed"] * 2
    # Server-to-server calls carry no Origin and pass.
    assert (await post(http, mint(), rpc("list_payees", {}))).status_code == 200


async def test_regression_only_the_listed_origins_pass(
    tmp_path: Path, verifier: Verifier, engine: Engine, mint: Mint
) -> None:
    settings = McpSettings(
        mcp_resource_url="http://127.0.0.1:8001/mcp",
        voicebank_state=tmp_path,
        mcp_allowed_origins="https://app.example.com/, http://localhost:5173",  # type: ignore[arg-type]
    )
    assert settings.mcp_allowed_origins == ("https://app.example.com", "http://localhost:5173")
    app: Starlette = create_app(settings, verifier=verifier, engine=engine)
    async with running(app), http_client(app) as http:
        for origin, status in (
            ("https://app.example.com", 200),
            ("https://APP.example.com", 200),
            ("http://localhost:5173", 200),
            ("https://app.example.com.evil.example", 403),
            ("http://app.example.com", 403),
            ("http://localhost:5174", 403),
            ("null", 403),
        ):
            response = await post(http, mint(), rpc("list_payees", {}), origin=origin)
            assert response.status_code == status, origin
        twice = await http.post(
            "/mcp",
            json=rpc("list_payees", {}),
            headers=[("authorization", f"Bearer {mint()}"), ("origin", "https://app.example.com"),
                     ("origin", "http://evil.example")],
        )  # fmt: skip
        assert twice.status_code == 403


def test_allowed_origins_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_ALLOWED_ORIGINS", "https://a.example https://b.example:8443")
    assert McpSettings().mcp_allowed_origins == ("https://a.example", "https://b.example:8443")
    monkeypatch.delenv("MCP_ALLOWED_ORIGINS")
    assert McpSettings().mcp_allowed_origins == ()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("get_balance", {"account_type": "\ud800"}),
        ("get_balance", {"account_type": "check\udfffing"}),
        ("make_payment", {"memo": "rent \udc00"}),
        ("list_payees", {"\ud83d": 1}),
    ],
)
async def test_regression_a_lone_surrogate_is_a_clean_refusal_with_an_audit_line(
    http: httpx2.AsyncClient,
    mint: Mint,
    engine: Engine,
    payment: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    protocol: str,
    tool: str,
    arguments: dict[str, Any],
) -> None:
    caplog.set_level(logging.INFO)
    if tool == "make_payment":
        arguments = payment | arguments
    response = await call_raw(http, mint(scope="read transact"), tool, arguments, protocol=protocol)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request"}
    (line,) = audit_lines(caplog)
    assert (line["outcome"], line["reason"]) == ("denied", "lone_surrogate")
    no_tracebacks(caplog)
    assert movements(engine) == 0


async def test_a_surrogate_pair_is_just_a_character(
    http: httpx2.AsyncClient, mint: Mint, payment: dict[str, Any]
) -> None:
    token = mint(scope="transact", bound=("make_payment", payment))
    response = await call_raw(http, token, "make_payment", payment | {"memo": "rent \U0001f3e0"})
    assert response.json()["result"]["structuredContent"]["status"] == "completed"
    assert b"\\ud83c\\udfe0" in response.request.content  # it was sent as an escaped pair


async def test_regression_client_input_never_logs_a_traceback_and_every_refusal_is_audited(
    http: httpx2.AsyncClient, mint: Mint, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}

    def envelope(protocol: str, **changes: Any) -> bytes:
        body = rpc("get_balance", {})
        if protocol != PROTOCOLS[0]:
            del body["params"]["_meta"]
        return json.dumps({k: v for k, v in (body | changes).items() if v is not None}).encode()

    sent = 0
    for protocol in PROTOCOLS:
        routing = {"mcp-protocol-version": protocol, "mcp-method": "tools/call", "mcp-name": "get_balance"}
        bodies = [
            envelope(protocol, method=5),
            envelope(protocol, jsonrpc="1.0"),
            envelope(protocol, method="no/such/method"),
            envelope(protocol, params={"name": "get_balance", "arguments": "x"}),
            envelope(
                protocol, params={"name": "get_balance", "arguments": {"account_type": {"a": [1] * 1000}}}
            ),
            envelope(protocol, params={"name": "get_balance", "arguments": {"account_type": 7}}),
            envelope(protocol, params={"name": "get_balance", "arguments": {"limit": "5"}}),
            b"[" + envelope(protocol) + b"," + envelope(protocol) + b"]",
            b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_balance"',
        ]
        for body in bodies:
            caplog.clear()
            auth = {"authorization": f"Bearer {mint()}"}
            response = await http.post("/mcp", content=body, headers=headers | routing | auth)
            answer = response.json()
            assert response.status_code >= 400 or "error" in answer or answer["result"]["isError"], body[:80]
            lines = audit_lines(caplog)
            assert len(lines) == 1, (body[:80], response.text, lines)
            assert lines[0]["outcome"] in ("denied", "refused")
            no_tracebacks(caplog)
            sent += 1
        caplog.clear()
        unknown = await call_raw(http, mint(), "drop_tables" * 1000, {}, protocol=protocol)
        assert unknown.status_code < 500
        (line,) = audit_lines(caplog)
        assert (line["tool"], line["outcome"], line["reason"]) == (None, "refused", "unknown_tool")
        no_tracebacks(caplog)
        sent += 1
    assert sent == 20
    assert movements(engine) == 0


@pytest.mark.parametrize("declared", [str(64 * 1024 + 1), "9" * 5000])
async def test_regression_a_declared_body_over_the_cap_is_refused_unread(
    app: Starlette, mint: Mint, declared: str
) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body was read")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"authorization", f"Bearer {mint()}".encode()), (b"content-length", declared.encode())]
    scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": headers, "query_string": b""}
    await app(scope, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"]) == {"error": "invalid_request"}
