"""`McpBank` end to end: the real issuer in-process, the real MCP server on loopback, real tokens."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
from fastmcp import FastMCP
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

import keys
from issuer import create_app as create_issuer
from keys import assertion_form
from mcp_server import create_schema, make_engine, seed
from mcp_server._app import create_app as create_mcp
from mcp_server._settings import McpSettings
from orchestrator import (
    ApprovalRequired,
    AuthorizationLost,
    Bank,
    BankError,
    IssuerClient,
    McpBank,
    Movement,
    NotAuthorized,
    RetryPolicy,
    ServiceUnavailable,
    TokenManager,
    ToolRefused,
)
from orchestrator._tokens._scopes import TOOL_SCOPES
from tests.support.issuer import CLIENT_KEYS, ISSUER, issuer_with_clients


async def _never(_: float) -> None:
    await asyncio.Event().wait()


async def _no_sleep(_: float) -> None:
    return None


def _listening_socket(port: int = 0) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without it
    # every loopback response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class Gate:
    """A `TokenVerifier` in front of the real one: refuses listed tokens, or drops scopes from claims."""

    def __init__(self, inner: keys.Verifier) -> None:
        self.inner = inner
        self.refused: set[str] = set()
        self.refuse_all = False
        self.drop_scope: str | None = None

    async def verify_async(self, token: str) -> dict[str, Any]:
        if self.refuse_all or token in self.refused:
            raise keys.Expired("refused by the test")
        claims = await self.inner.verify_async(token)
        if self.drop_scope is not None:
            claims["scope"] = " ".join(s for s in claims["scope"].split() if s != self.drop_scope)
        return claims


@dataclass
class Sent:
    method: str
    body: dict[str, Any]
    token: str
    status: int


class Recorder(httpx2.AsyncBaseTransport):
    """The orchestrator's side of the wire to the MCP server: records every request."""

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.sent: list[Sent] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        body = json.loads(request.content) if request.content else {}
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.sent.append(Sent(request.method, body, token, response.status_code))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def calls(self, tool: str | None = None) -> list[Sent]:
        return [
            s
            for s in self.sent
            if s.body.get("method") == "tools/call" and (tool is None or s.body["params"]["name"] == tool)
        ]


class IssuerWire(httpx.AsyncBaseTransport):
    """The orchestrator's side of the wire to the issuer: remembers each refresh token handed out."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.refresh_tokens: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        if request.url.path == "/token" and response.status_code == 200:
            handed_out = json.loads(body).get("refresh_token")
            if handed_out:
                self.refresh_tokens.append(handed_out)
        return httpx.Response(response.status_code, headers=response.headers, content=body)


@dataclass
class McpServer:
    """The MCP server app served by uvicorn in this event loop; `restart()` keeps the port."""

    make_app: Callable[[], Any]
    port: int
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        config = uvicorn.Config(self.make_app(), lifespan="on", log_config=None, log_level="warning")
        self.server = uvicorn.Server(config)
        # Connections made before startup ends wait in the backlog: no polling for readiness needed.
        self.task = asyncio.create_task(self.server.serve(sockets=[_listening_socket(self.port)]))

    async def stop(self) -> None:
        assert self.server is not None
        assert self.task is not None
        self.server.should_exit = True
        await self.task
        self.server = self.task = None

    async def crash(self) -> None:
        """Die as a killed process does: every open connection cut, in-flight requests unanswered."""
        assert self.server is not None
        assert self.task is not None
        for connection in list(self.server.server_state.connections):
            connection.transport.abort()  # type: ignore[attr-defined]
        self.server.force_exit = self.server.should_exit = True
        await self.task
        self.server = self.task = None


@dataclass
class World:
    issuer_http: httpx.AsyncClient
    issuer_wire: IssuerWire
    mcp: McpServer
    gate: Gate
    wire: Recorder
    url: str
    banks: list[McpBank] = field(default_factory=list)
    issuer_forms: list[dict[str, str]] = field(default_factory=list)

    async def session(self, scope: str = "read transact configure", user: str = "alice") -> dict[str, Any]:
        auth = assertion_form("backend", CLIENT_KEYS["backend"], f"{ISSUER}/token", time.time())
        answer = await self.issuer_http.post(
            f"{ISSUER}/token", data={"grant_type": "client_credentials", "scope": "sessions:create", **auth}
        )
        bearer = answer.json()["access_token"]
        created = await self.issuer_http.post(
            f"{ISSUER}/sessions",
            json={"user_id": user, "scope": scope},
            headers={"Authorization": f"Bearer {bearer}"},
        )
        assert created.status_code == 201, created.text
        body: dict[str, Any] = created.json()
        return body

    async def bank(
        self, scope: str = "read transact configure", user: str = "alice"
    ) -> tuple[McpBank, TokenManager]:
        client = IssuerClient(
            self.issuer_http,
            issuer=ISSUER,
            client_id="orchestrator",
            key=CLIENT_KEYS["orchestrator"],
            retry=RetryPolicy(attempts=2),
            sleep=_no_sleep,
        )
        session = await self.session(scope, user)
        tokens = TokenManager(client, session_id=session["session_id"])
        await tokens.start(session["session_grant"], "read")
        bank = McpBank(tokens, self.url, transport=self.wire)
        self.banks.append(bank)
        return bank, tokens


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    probe = _listening_socket()
    port = probe.getsockname()[1]
    probe.close()
    url = f"http://127.0.0.1:{port}/mcp"
    (tmp_path / "issuer").mkdir()
    issuer_app = create_issuer(
        issuer_with_clients(tmp_path / "issuer", CLIENT_KEYS, mcp_resource_url=url), rotation_sleep=_never
    )
    engine: Engine = make_engine(f"sqlite:///{tmp_path / 'bank.db'}")
    create_schema(engine)
    seed(engine)
    mcp_settings = McpSettings(mcp_issuer_url=ISSUER, mcp_resource_url=url, redis_url=None)
    issuer_wire = IssuerWire(issuer_app)
    async with (
        issuer_app.router.lifespan_context(issuer_app),
        httpx.AsyncClient(transport=issuer_wire) as issuer_http,
    ):
        jwks = keys.JWKSCache(f"{ISSUER}/.well-known/jwks.json", issuer_http)
        gate = Gate(keys.Verifier(jwks, keys.VerifyPolicy(issuer=ISSUER, audience=url)))
        mcp = McpServer(lambda: create_mcp(mcp_settings, verifier=gate, engine=engine), port)
        await mcp.start()
        world = World(issuer_http, issuer_wire, mcp, gate, Recorder(), url)
        try:
            yield world
        finally:
            for bank in world.banks:
                await bank.aclose()
            if mcp.server is not None:
                await mcp.stop()
            engine.dispose()


def confirmed(kind: str, source: str, target: str, amount: str, key: str) -> Movement:
    """What the user confirmed: the movement a transact token is bound to."""
    return Movement("payment" if kind == "payment" else "transfer", source, target, amount, "USD", key)


async def _accounts(bank: McpBank) -> dict[str, dict[str, Any]]:
    return {a["account_number"][-4:]: a for a in (await bank.get_balance())["accounts"]}


async def test_mcp_bank_satisfies_the_bank_protocol(world: World) -> None:
    bank, _ = await world.bank()
    assert isinstance(bank, Bank)


async def test_read_tools_work_under_a_read_token(world: World) -> None:
    bank, _ = await world.bank()
    accounts = await _accounts(bank)
    assert accounts["1234"]["type"] == "checking"
    payees = (await bank.list_payees())["payees"]
    assert payees
    assert "loans" in await bank.list_loans()
    checking = accounts["1234"]["account_id"]
    history = (await bank.list_transactions(account_id=checking, limit=3))["transactions"]
    assert 0 < len(history) <= 3
    read_tokens = {s.token for s in world.wire.sent}
    assert len(read_tokens) == 1  # one cached read token served every request


async def test_each_payment_gets_a_fresh_transact_token_and_the_key_is_idempotent(world: World) -> None:
    bank, _ = await world.bank()
    checking = (await _accounts(bank))["1234"]["account_id"]
    payee = (await bank.list_payees())["payees"][0]["payee_id"]
    movement = confirmed("payment", checking, payee, "12.50", "pay-1")
    first = await bank.make_payment(checking, payee, "12.50", "pay-1", memo="rent", confirmed=movement)
    again = await bank.make_payment(checking, payee, "12.50", "pay-1", memo="rent", confirmed=movement)
    assert first["status"] == "completed"
    assert again["payment_id"] == first["payment_id"]  # the same key never pays twice
    tokens = [s.token for s in world.wire.calls("make_payment")]
    assert len(tokens) == len(set(tokens)) == 2


@pytest.mark.parametrize("changed", ["payee", "amount", "key"])
async def test_a_call_that_differs_from_the_confirmed_movement_is_refused_by_the_mcp_server(
    world: World, changed: str
) -> None:
    # A bug between the confirmation and the call: the token carries what was confirmed, the call
    # something else. The MCP server refuses it before spending the token; no money moves.
    bank, _ = await world.bank()
    checking = (await _accounts(bank))["1234"]["account_id"]
    payee, other = [p["payee_id"] for p in (await bank.list_payees())["payees"][:2]]
    movement = confirmed("payment", checking, payee, "25.00", "pay-bound")
    call = {"payee": (other, "25.00", "pay-bound"), "amount": (payee, "250.00", "pay-bound")}.get(
        changed, (payee, "25.00", "pay-other")
    )
    before = (await _accounts(bank))["1234"]["balance"]
    with pytest.raises(NotAuthorized) as refused:
        await bank.make_payment(checking, *call, confirmed=movement)
    assert str(refused.value) == "That was not the payment you confirmed, so no money moved."
    assert world.wire.calls("make_payment")[-1].status == 403
    assert (await _accounts(bank))["1234"]["balance"] == before


async def test_above_the_threshold_nothing_is_paid_and_the_approval_is_asked_for(world: World) -> None:
    bank, tokens = await world.bank()
    checking = (await _accounts(bank))["1234"]["account_id"]
    payee = (await bank.list_payees())["payees"][0]["payee_id"]
    movement = confirmed("payment", checking, payee, "750.00", "pay-big")
    with pytest.raises(ApprovalRequired) as waiting:
        await bank.make_payment(checking, payee, "750.00", "pay-big", confirmed=movement)
    assert waiting.value.approval.movement == movement
    assert world.wire.calls("make_payment") == []
    assert tokens.lost is None  # the call goes on: the refresh token was not spent
    assert await bank.list_loans()


async def test_transfer_and_settings_use_their_own_scopes(world: World) -> None:
    bank, _ = await world.bank()
    accounts = await _accounts(bank)
    source, target = accounts["1234"]["account_id"], accounts["5678"]["account_id"]
    moved = await bank.transfer_between_accounts(
        source, target, "5.00", "move-1", confirmed=confirmed("transfer", source, target, "5.00", "move-1")
    )
    assert moved["status"] == "completed"
    settings = await bank.update_notification_settings(low_balance_alert=True, channel="sms")
    assert settings["settings"]["channel"] == "sms"
    tokens = {s.body["params"]["name"]: s.token for s in world.wire.calls()}
    assert (
        len(
            {
                tokens["get_balance"],
                tokens["transfer_between_accounts"],
                tokens["update_notification_settings"],
            }
        )
        == 3
    )


async def test_a_tool_refusal_is_the_tools_own_sentence(world: World) -> None:
    bank, _ = await world.bank()
    checking = (await _accounts(bank))["1234"]["account_id"]
    unknown = "pye_unknown"
    movement = confirmed("payment", checking, unknown, "1.00", "pay-unknown")
    with pytest.raises(ToolRefused) as caught:
        await bank.make_payment(checking, unknown, "1.00", "pay-unknown", confirmed=movement)
    assert str(caught.value) == "Payee not found."
    with pytest.raises(ToolRefused, match="not found"):
        await bank.list_transactions(account_id="acc_nope")


async def test_another_users_account_is_not_found(world: World) -> None:
    alice, _ = await world.bank()
    bob, _ = await world.bank(user="bob")
    alices = (await _accounts(alice))["1234"]["account_id"]
    with pytest.raises(ToolRefused, match="not found"):
        await bob.list_transactions(account_id=alices)


async def test_a_401_forces_one_refresh_and_one_retry(world: World) -> None:
    bank, _ = await world.bank()
    await bank.list_loans()
    stale = world.wire.sent[-1].token
    world.gate.refused.add(stale)  # e.g. the MCP server's clock runs ahead
    assert "loans" in await bank.list_loans()
    statuses = [(s.token == stale, s.status) for s in world.wire.sent if s.token == stale][-1]
    assert statuses == (True, 401)
    assert world.wire.sent[-1].token != stale
    # Further calls use the new token straight away.
    before = len(world.wire.sent)
    await bank.list_loans()
    assert all(s.status < 400 for s in world.wire.sent[before:])


async def test_a_payment_retried_after_401_keeps_its_idempotency_key_and_pays_once(world: World) -> None:
    bank, _ = await world.bank()
    checking = (await _accounts(bank))["1234"]["account_id"]
    payee = (await bank.list_payees())["payees"][0]["payee_id"]
    balance_before = (await _accounts(bank))["1234"]["balance"]
    original = world.gate.verify_async
    refused_once: list[str] = []
    uses: dict[str, int] = {}

    async def refuse_first_transact_at_the_tool_call(token: str) -> dict[str, Any]:
        claims = await original(token)
        uses[token] = uses.get(token, 0) + 1
        # The first use of the transact token is its tools/call: one request per tool call.
        if "transact" in claims["scope"] and not refused_once and uses[token] == 1:
            refused_once.append(token)
            raise keys.Expired("refused by the test")
        return claims

    world.gate.verify_async = refuse_first_transact_at_the_tool_call  # type: ignore[method-assign]
    movement = confirmed("payment", checking, payee, "20.00", "pay-401")
    paid = await bank.make_payment(checking, payee, "20.00", "pay-401", confirmed=movement)
    calls = world.wire.calls("make_payment")
    assert [c.status for c in calls] == [401, 200]  # one forced refresh, one retry
    assert calls[0].token == refused_once[0] != calls[1].token
    assert {c.body["params"]["arguments"]["idempotency_key"] for c in calls} == {"pay-401"}
    after = (await _accounts(bank))["1234"]["balance"]
    assert Decimal(balance_before) - Decimal(after) == Decimal("20.00")
    assert paid["amount"] == "20.00"


async def test_a_second_401_is_unavailable_not_a_loop(world: World) -> None:
    bank, tokens = await world.bank()
    world.gate.refuse_all = True
    with pytest.raises(ServiceUnavailable) as caught:
        await bank.get_balance()
    assert "verify" in str(caught.value)
    assert [s.status for s in world.wire.sent] == [401, 401]
    assert tokens.lost is None


async def test_403_insufficient_scope_is_a_plain_refusal(world: World) -> None:
    bank, _ = await world.bank()
    world.gate.drop_scope = "configure"
    with pytest.raises(ToolRefused) as caught:
        await bank.update_notification_settings(channel="email")
    assert str(caught.value) == "This call is not allowed to do that."
    assert world.wire.sent[-1].status == 403


async def test_a_scope_the_user_did_not_allow_is_refused_before_any_mcp_traffic(world: World) -> None:
    bank, tokens = await world.bank(scope="read")
    with pytest.raises(ToolRefused, match="payments"):
        await bank.make_payment(
            "acc", "pye", "1.00", "k", confirmed=confirmed("payment", "acc", "pye", "1.00", "k")
        )
    assert world.wire.sent == []
    assert tokens.lost is None
    assert await bank.list_loans()


async def test_lost_authorization_stops_every_tool_without_contacting_anyone(world: World) -> None:
    bank, tokens = await world.bank()
    await tokens.revoke()
    before = len(world.wire.sent)
    payment = bank.make_payment("a", "p", "1.00", "k", confirmed=confirmed("payment", "a", "p", "1.00", "k"))
    for call in (bank.get_balance(), bank.list_payees(), payment):
        with pytest.raises(AuthorizationLost):
            await call
    assert len(world.wire.sent) == before


async def test_mcp_server_down_is_unavailable_and_its_restart_is_picked_up_next_call(
    world: World,
) -> None:
    bank, _ = await world.bank()
    await bank.list_loans()  # leaves a kept-alive connection in the pool
    await world.mcp.stop()
    with pytest.raises(ServiceUnavailable) as caught:
        await bank.list_loans()
    assert "can't reach the bank" in str(caught.value)
    await world.mcp.start()
    assert "loans" in await bank.list_loans()


async def test_a_restart_between_calls_is_invisible(world: World) -> None:
    bank, _ = await world.bank()
    await bank.list_loans()
    await world.mcp.stop()
    await world.mcp.start()
    assert "loans" in await bank.list_loans()


async def test_concurrent_calls_share_one_read_token_and_the_pool(world: World) -> None:
    bank, _ = await world.bank()
    results = await asyncio.gather(*(bank.get_balance() for _ in range(20)))
    assert all(r["accounts"] for r in results)
    assert len({s.token for s in world.wire.sent}) == 1


def test_a_result_without_a_json_object_is_unavailable() -> None:
    from mcp_types import CallToolResult, TextContent

    from orchestrator._bank._mcp import _outcome

    with pytest.raises(ServiceUnavailable):
        _outcome("get_balance", CallToolResult(content=[TextContent(type="text", text="hi")]))
    with pytest.raises(ToolRefused, match=r"^The bank refused that request\.$"):
        _outcome("get_balance", CallToolResult(content=[], is_error=True))


async def test_a_401_whose_forced_refresh_finds_the_family_revoked_loses_authorization(world: World) -> None:
    bank, _ = await world.bank()
    await bank.list_loans()
    world.gate.refused.add(world.wire.sent[-1].token)
    # The family is revoked behind the token manager's back (an admin, or a detected reuse).
    auth = assertion_form("orchestrator", CLIENT_KEYS["orchestrator"], f"{ISSUER}/token", time.time())
    answer = await world.issuer_http.post(
        f"{ISSUER}/revoke", data={"token": world.issuer_wire.refresh_tokens[-1], **auth}
    )
    assert answer.status_code == 200
    with pytest.raises(AuthorizationLost):
        await bank.list_loans()
    assert world.wire.sent[-1].status == 401


async def test_one_tool_call_is_one_stateless_request(world: World) -> None:
    bank, _ = await world.bank()
    await bank.get_balance()
    await bank.list_loans()
    assert [s.body["method"] for s in world.wire.sent] == ["tools/call", "tools/call"]
    assert all(s.status == 200 for s in world.wire.sent)


async def test_a_restart_mid_call_is_survived_by_resending_once(world: World) -> None:
    """The server dies with the call in flight (its connections cut), comes back, and the call succeeds."""
    bank, _ = await world.bank()
    await bank.list_loans()
    reached = asyncio.Event()
    release = asyncio.Event()
    original = world.gate.verify_async

    async def hold_first_call(token: str) -> dict[str, Any]:
        if not reached.is_set():
            reached.set()
            await release.wait()
        return await original(token)

    world.gate.verify_async = hold_first_call  # type: ignore[method-assign]
    call = asyncio.create_task(bank.get_balance())
    await reached.wait()  # the request is inside the old server
    await world.mcp.crash()
    await world.mcp.start()
    assert "accounts" in await call
    release.set()  # the old server's orphaned request ends; its answer goes nowhere
    answered = [s for s in world.wire.sent if s.body.get("method") == "tools/call"]
    assert [s.status for s in answered] == [200, 200]  # list_loans, then get_balance on the new server


async def test_regression_a_programming_error_is_not_reported_as_an_unreachable_bank(world: World) -> None:
    """McpBank caught every Exception, so a bug in our own call (here: an argument that cannot be sent)
    reached the caller as "I can't reach the bank"; only the client's transport and protocol errors may."""
    bank, _ = await world.bank()
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the point is which kind it is not
        await bank.get_balance(account_type=object())  # type: ignore[arg-type]
    assert not isinstance(caught.value, BankError), repr(caught.value)
    assert "loans" in await bank.list_loans()  # the bank itself is fine


def _scope_of(token: str) -> str:
    """The `scope` claim of a token the issuer signed (read, not verified: the MCP server verified it)."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    scope: str = claims["scope"]
    return scope


async def test_concurrent_calls_of_different_scopes_each_send_their_own_token(world: World) -> None:
    """One MCP client serves every call of the voice call: each request still carries its own call's token."""
    bank, _ = await world.bank()
    accounts = await _accounts(bank)
    checking, savings = accounts["1234"]["account_id"], accounts["5678"]["account_id"]
    for round_ in range(3):
        await asyncio.gather(
            bank.list_loans(),
            bank.transfer_between_accounts(
                checking,
                savings,
                "1.00",
                f"move-{round_}",
                confirmed=confirmed("transfer", checking, savings, "1.00", f"move-{round_}"),
            ),
            bank.update_notification_settings(low_balance_alert=True),
            bank.get_balance(),
        )
    sent = world.wire.calls()
    assert len(sent) == 1 + 4 * 3
    assert all(s.status == 200 for s in sent)
    for request in sent:
        assert _scope_of(request.token) == TOOL_SCOPES[request.body["params"]["name"]]


# McpBank speaks the stateless protocol itself: against other servers' answers it must read what the MCP
# SDK's client reads (an event stream, a redirect within the origin) and refuse the rest clearly.

OTHER = "http://127.0.0.1:8001"


def _sdk_server(*, path: str = "/mcp", blob: int = 0) -> Starlette:
    """An MCP server of the SDK's own making with a `get_balance` of its own (no auth: tokens are ignored)."""
    server = FastMCP("other-bank")

    @server.tool
    async def get_balance(account_type: str | None = None) -> dict[str, Any]:
        return {"accounts": [{"type": account_type or "checking", "note": "x" * blob}]}

    return server.http_app(path=path, stateless_http=True, json_response=True, host_origin_protection=False)


def _streaming_server(blob: int = 0) -> Starlette:
    """A server answering in the protocol's event-stream form: a notification, then the answer.

    The SDK's server streams only when it has something to send before the answer (logs or progress,
    which McpBank does not ask for), so its event stream is written out here."""

    async def endpoint(request: Request) -> Response:
        call = json.loads(await request.body())
        accounts = [{"type": call["params"]["arguments"].get("account_type", "checking"), "note": "x" * blob}]
        result = {
            "content": [{"type": "text", "text": json.dumps({"accounts": accounts})}],
            "structuredContent": {"accounts": accounts},
            "isError": False,
            "resultType": "complete",
        }
        note = {
            "jsonrpc": "2.0",
            "method": "notifications/message",
            "params": {"level": "info", "data": "hi"},
        }
        answer = {"jsonrpc": "2.0", "id": call["id"], "result": result}
        events = [f"event: message\ndata: {json.dumps(message)}\n\n" for message in (note, answer)]
        return StreamingResponse(iter(events), media_type="text/event-stream")

    return Starlette(routes=[Route("/mcp", endpoint, methods=["POST"])])


@contextlib.asynccontextmanager
async def _bank_on(world: World, app: Starlette, path: str = "/mcp") -> AsyncIterator[McpBank]:
    _, tokens = await world.bank()
    bank = McpBank(tokens, OTHER + path, transport=httpx2.ASGITransport(app=app))
    async with app.router.lifespan_context(app):
        try:
            yield bank
        finally:
            await bank.aclose()


@pytest.mark.parametrize("stream", [False, True], ids=["sdk-server-json", "event-stream"])
async def test_a_server_answering_json_or_an_event_stream_is_read(world: World, stream: bool) -> None:
    async with _bank_on(world, _streaming_server() if stream else _sdk_server()) as bank:
        assert (await bank.get_balance("savings"))["accounts"][0]["type"] == "savings"


async def test_a_redirect_within_the_servers_origin_is_followed(world: World) -> None:
    # The server's endpoint is /mcp/: Starlette answers /mcp with a 307 to it, as the SDK's client follows.
    async with _bank_on(world, _sdk_server(path="/mcp/"), path="/mcp") as bank:
        assert (await bank.get_balance())["accounts"]


async def test_a_redirect_to_another_origin_is_not_followed(world: World) -> None:
    seen: list[str] = []

    async def elsewhere(request: Request) -> Response:
        seen.append(str(request.url))
        if request.url.hostname == "127.0.0.1":
            return RedirectResponse("http://elsewhere.example/mcp", status_code=307)
        return JSONResponse({"jsonrpc": "2.0", "id": 1, "result": {}})

    app = Starlette(routes=[Route("/mcp", elsewhere, methods=["POST"])])
    async with _bank_on(world, app) as bank:
        with pytest.raises(ServiceUnavailable, match="can't reach the bank"):
            await bank.get_balance()
    assert seen == [f"{OTHER}/mcp"]  # the token never went to the other origin


@pytest.mark.parametrize("status", [200, 400, 500])
async def test_a_json_rpc_error_is_unavailable(world: World, status: int) -> None:
    error = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "internal error"}}

    async def endpoint(_: Request) -> Response:
        return JSONResponse(error, status_code=status)

    app = Starlette(routes=[Route("/mcp", endpoint, methods=["POST"])])
    async with _bank_on(world, app) as bank:
        with pytest.raises(ServiceUnavailable, match="can't reach the bank"):
            await bank.get_balance()


# A 2026-07-28 server may answer a tool call by asking the client for input first; the agent has none to give.
_ASKS_FOR_INPUT = {
    "resultType": "input_required",
    "inputRequests": {
        "confirm": {
            "method": "elicitation/create",
            "params": {"message": "Sure?", "requestedSchema": {"type": "object", "properties": {}}},
        }
    },
}


@pytest.mark.parametrize(
    "answer",
    [
        PlainTextResponse("<html>a proxy's page</html>"),
        Response(b"{not json", media_type="application/json"),
        JSONResponse({"jsonrpc": "2.0", "id": 999, "result": {"content": []}}),  # not our request's id
        JSONResponse({"jsonrpc": "2.0", "id": 1, "result": {"content": "not a list"}}),
        Response(b"event: message\ndata: \n\n", media_type="text/event-stream"),  # ends without an answer
        JSONResponse({"jsonrpc": "2.0", "id": 1}),  # neither a result nor an error
        JSONResponse({"jsonrpc": "2.0", "id": 1, "result": _ASKS_FOR_INPUT}),
    ],
    ids=[
        "html",
        "not-json",
        "other-id",
        "not-a-result",
        "stream-without-answer",
        "no-result",
        "input-required",
    ],
)
async def test_an_answer_that_is_not_a_tools_call_result_is_unreadable(
    world: World, answer: Response
) -> None:
    async def endpoint(_: Request) -> Response:
        return answer

    app = Starlette(routes=[Route("/mcp", endpoint, methods=["POST"])])
    async with _bank_on(world, app) as bank:
        with pytest.raises(ServiceUnavailable, match="could not read"):
            await bank.get_balance()


@pytest.mark.parametrize("stream", [False, True], ids=["sdk-server-json", "event-stream"])
async def test_regression_an_answer_beyond_one_mebibyte_is_refused_unread(world: World, stream: bool) -> None:
    """The SDK's client read a JSON answer of any size into memory: one MCP server (or anything answering
    at its address) could exhaust the voice agent's memory with a single answer. Bounded before parsing."""
    server = _streaming_server(blob=1 << 20) if stream else _sdk_server(blob=1 << 20)
    async with _bank_on(world, server) as bank:
        with pytest.raises(ServiceUnavailable):
            await bank.get_balance()
