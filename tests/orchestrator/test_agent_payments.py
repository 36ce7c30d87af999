"""Payments the caller confirmed, and only those: a scripted model, the real agent, and for approvals the real
issuer and MCP server in-process with the caller's banking app played over the issuer's HTTP API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from livekit.agents import AgentSession

import keys
from issuer import create_app as create_issuer
from keys import assertion_form
from mcp_server import McpSettings, create_schema, make_engine, seed
from mcp_server import create_app as create_mcp
from orchestrator import (
    BankingAgent,
    CallerIdentity,
    CallState,
    IssuerClient,
    McpBank,
    Movement,
    RetryPolicy,
    TokenManager,
)
from orchestrator._agent._speech import NOT_CONFIRMED
from tests.support.agent import MemoryBank, ScriptedLLM, call
from tests.support.issuer import CLIENT_KEYS, ISSUER, issuer_with_clients
from tests.support.lifespan import running

GRANT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
RESOURCE = "http://127.0.0.1:8001/mcp"
PAYMENT = {"from_account": "account-1", "payee": "payee-1", "amount": "25.00"}


def said(session: AgentSession[CallState]) -> list[str]:
    return [m.text_content or "" for m in session.history.messages() if m.role == "assistant"]


# -- the model asks for something else than the caller confirmed (the in-memory bank is enough) ----------


@dataclass
class MemoryCall:
    session: AgentSession[CallState]
    llm: ScriptedLLM
    bank: MemoryBank
    state: CallState


@pytest.fixture
async def memory_call() -> AsyncIterator[MemoryCall]:
    bank = MemoryBank()
    scripted = ScriptedLLM()
    state = CallState(identity=CallerIdentity("alice", "room-1", GRANT))
    keys_ = iter(f"key-{n}" for n in range(1, 100))
    async with AgentSession[CallState](llm=scripted, userdata=state) as session:
        await session.start(BankingAgent(bank, new_idempotency_key=lambda: next(keys_)))
        c = MemoryCall(session, scripted, bank, state)
        c.llm.script(
            [call("get_balance", "c1"), call("list_payees", "c2")], "I see your accounts and payees."
        )
        await c.session.run(user_input="Show me my accounts and who I can pay.")
        yield c


async def _confirmed_25_to_jane(c: MemoryCall) -> None:
    c.llm.script([call("prepare_payment", "p1", **PAYMENT)], "Pay 25.00 to Jane S. from checking?")
    await c.session.run(user_input="Pay Jane twenty five dollars from checking.")


@pytest.mark.parametrize(
    "changed",
    [{"payee": "payee-2"}, {"amount": "2500.00"}, {"amount": "2,500.00"}, {"from_account": "account-2"}],
    ids=["payee B", "2500.00", "2,500.00", "other account"],
)
async def test_a_model_calling_the_tool_with_other_arguments_moves_no_money_and_the_caller_is_told(
    memory_call: MemoryCall, changed: dict[str, str]
) -> None:
    c = memory_call
    await _confirmed_25_to_jane(c)
    c.llm.script([call("make_payment", "m1", confirmation_id="confirm-1", **(PAYMENT | changed))])
    result = await c.session.run(user_input="Yes, go ahead.")

    assert said(c.session)[-1] == NOT_CONFIRMED.format(noun="payment")
    result.expect.contains_message(role="assistant")
    assert "make_payment" not in c.bank.calls  # no token asked for, nothing sent
    assert c.bank.accounts["acc-000111222333"].balance == Decimal("120.00")
    # The confirmation is spent: a second try needs a fresh read-back and yes.
    assert c.state.pending is None
    c.llm.script([call("make_payment", "m2", confirmation_id="confirm-1", **PAYMENT)], "Sorry.")
    again = await c.session.run(user_input="Yes.")
    assert "no payment waiting" in again.expect[1].is_function_call_output(is_error=True).event().item.output
    assert "make_payment" not in c.bank.calls


@pytest.mark.parametrize("amount", ["25", "25.0", "25.00", " 25.00 "])
async def test_the_same_amount_written_another_way_is_the_confirmed_payment(
    memory_call: MemoryCall, amount: str
) -> None:
    c = memory_call
    await _confirmed_25_to_jane(c)
    c.llm.script(
        [call("make_payment", "m1", confirmation_id="confirm-1", **(PAYMENT | {"amount": amount}))], "Done."
    )
    await c.session.run(user_input="Yes.")
    assert c.bank.accounts["acc-000111222333"].balance == Decimal("95.00")


async def test_the_token_is_bound_to_what_the_caller_confirmed(memory_call: MemoryCall) -> None:
    c = memory_call
    await _confirmed_25_to_jane(c)
    c.llm.script([call("make_payment", "m1", confirmation_id="confirm-1", **PAYMENT)], "Done.")
    await c.session.run(user_input="Yes, go ahead.")
    (movement,) = c.bank.confirmed
    assert movement == Movement(
        "payment", "acc-000111222333", "pay-77001234567", "25.00", "USD", "key-1", movement.label
    )
    assert movement.label == "Pay 25.00 USD to Jane S."
    assert len(movement.binding_message()) <= 80


async def test_a_transfer_restated_with_the_accounts_swapped_moves_no_money(memory_call: MemoryCall) -> None:
    c = memory_call
    c.llm.script(
        [call("prepare_transfer", "t1", from_account="account-2", to_account="account-1", amount="100")],
        "Move?",
    )
    await c.session.run(user_input="Move 100 from savings to checking.")
    swapped = {"from_account": "account-1", "to_account": "account-2", "amount": "100"}
    c.llm.script([call("make_transfer", "t2", confirmation_id="confirm-1", **swapped)])
    await c.session.run(user_input="Yes.")
    assert said(c.session)[-1] == NOT_CONFIRMED.format(noun="transfer")
    assert "transfer_between_accounts" not in c.bank.calls


async def test_regression_amounts_in_other_scripts_digits_are_refused_before_the_bank(
    memory_call: MemoryCall,
) -> None:
    # `\d` matched "٢٥" (Arabic-Indic 25), which float() then read as 25; only [0-9] amounts are amounts.
    c = memory_call
    c.llm.script([call("prepare_payment", "p1", **(PAYMENT | {"amount": "٢٥"}))], "Sorry.")
    result = await c.session.run(user_input="Pay Jane.")
    assert (
        "at most two decimals" in result.expect[1].is_function_call_output(is_error=True).event().item.output
    )
    assert c.state.pending is None


# -- above the approval threshold: the real issuer and MCP server, the caller's banking app over HTTP -------


class Clock:
    """One clock for the issuer, the MCP server and the token manager; the poll waits move it."""

    def __init__(self) -> None:
        self.now = time.time()
        self.running = asyncio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """The token manager's wait between polls: time stands still until the test lets it run."""
        await self.running.wait()
        self.now += seconds
        await asyncio.sleep(0)


async def _never(_: float) -> None:
    await asyncio.Event().wait()


@dataclass
class ApprovalCall:
    session: AgentSession[CallState]
    llm: ScriptedLLM
    state: CallState
    bank: McpBank
    issuer: httpx.AsyncClient
    clock: Clock
    polls: list[str]

    async def app_bearer(self) -> dict[str, str]:
        form = {"grant_type": "client_credentials", "scope": "approvals:decide"}
        form |= assertion_form("backend", CLIENT_KEYS["backend"], f"{ISSUER}/token", self.clock())
        token = (await self.issuer.post(f"{ISSUER}/token", data=form)).json()["access_token"]
        return {"Authorization": f"Bearer {token}"}

    async def pending(self) -> list[dict[str, Any]]:
        answer = await self.issuer.get(
            f"{ISSUER}/approvals", params={"user_id": "alice"}, headers=await self.app_bearer()
        )
        approvals: list[dict[str, Any]] = answer.json()["approvals"]
        return approvals

    async def decide(self, auth_req_id: str, decision: str) -> int:
        answer = await self.issuer.post(
            f"{ISSUER}/approvals/{auth_req_id}", json={"decision": decision}, headers=await self.app_bearer()
        )
        return answer.status_code

    async def checking(self) -> Decimal:
        accounts = (await self.bank.get_balance("checking"))["accounts"]
        return Decimal(accounts[0]["balance"])


class PollCounter(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, polls: list[str]) -> None:
        self.inner = inner
        self.polls = polls

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if b"grant-type%3Aciba" in request.content:
            self.polls.append(request.url.path)
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def approval_call(tmp_path: Path) -> AsyncIterator[ApprovalCall]:
    clock = Clock()
    (tmp_path / "issuer").mkdir()
    issuer_app = create_issuer(
        issuer_with_clients(tmp_path / "issuer", CLIENT_KEYS, mcp_resource_url=RESOURCE),
        clock=clock,
        rotation_sleep=_never,
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'bank.db'}")
    create_schema(engine)
    seed(engine)
    polls: list[str] = []

    async with (
        issuer_app.router.lifespan_context(issuer_app),
        httpx.AsyncClient(transport=PollCounter(httpx.ASGITransport(app=issuer_app), polls)) as issuer_http,
    ):
        jwks = keys.JWKSCache(f"{ISSUER}/.well-known/jwks.json", issuer_http, clock=clock)
        verifier = keys.Verifier(jwks, keys.VerifyPolicy(issuer=ISSUER, audience=RESOURCE), clock=clock)
        settings = McpSettings(mcp_issuer_url=ISSUER, mcp_resource_url=RESOURCE, redis_url=None)
        mcp_app = create_mcp(settings, verifier=verifier, engine=engine, clock=clock)
        client = IssuerClient(
            issuer_http,
            issuer=ISSUER,
            client_id="orchestrator",
            key=CLIENT_KEYS["orchestrator"],
            retry=RetryPolicy(attempts=2),
            clock=clock,
        )
        async with running(mcp_app):
            backend = ApprovalCall(None, ScriptedLLM(), None, None, issuer_http, clock, polls)  # type: ignore[arg-type]
            created = await issuer_http.post(
                f"{ISSUER}/sessions", json={"user_id": "alice", "scope": "read transact configure"},
                headers=await _sessions_bearer(issuer_http, clock),
            )  # fmt: skip
            sid = created.json()["session_id"]
            tokens = TokenManager(client, clock=clock, session_id=sid, sleep=clock.sleep)
            await tokens.start(created.json()["session_grant"])
            bank = McpBank(tokens, RESOURCE, transport=httpx2.ASGITransport(app=mcp_app))
            state = CallState(identity=CallerIdentity("alice", sid, GRANT))
            async with AgentSession[CallState](llm=backend.llm, userdata=state) as session:
                await session.start(BankingAgent(bank))
                c = ApprovalCall(session, backend.llm, state, bank, issuer_http, clock, polls)
                c.llm.script([call("get_balance", "c1"), call("list_payees", "c2")], "I see them.")
                await c.session.run(user_input="Show me my accounts and who I can pay.")
                try:
                    yield c
                finally:
                    await state.approvals.cancel()
                    await tokens.revoke()
                    await bank.aclose()
    engine.dispose()


async def _sessions_bearer(http: httpx.AsyncClient, clock: Clock) -> dict[str, str]:
    form = {"grant_type": "client_credentials", "scope": "sessions:create"}
    form |= assertion_form("backend", CLIENT_KEYS["backend"], f"{ISSUER}/token", clock())
    token = (await http.post(f"{ISSUER}/token", data=form)).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def _confirmed_750(c: ApprovalCall) -> None:
    """The caller confirms 750.00 to the first payee; the agent says it waits for their app."""
    payment = {"from_account": "account-1", "payee": "payee-1", "amount": "750.00"}
    c.llm.script([call("prepare_payment", "p1", **payment)], "Pay 750.00? Shall I?")
    await c.session.run(user_input="Pay the rent, seven hundred fifty, from checking.")
    c.llm.script([call("make_payment", "m1", confirmation_id="confirm-1", **payment)])
    await c.session.run(user_input="Yes, go ahead.")


async def test_above_the_threshold_the_caller_approves_in_the_app_while_the_call_goes_on(
    approval_call: ApprovalCall,
) -> None:
    c = approval_call
    before = await c.checking()
    await _confirmed_750(c)
    waiting = said(c.session)[-1]
    assert "needs your approval in your banking app" in waiting
    assert len(c.state.approvals) == 1
    # The conversation is not blocked while the approval waits.
    c.llm.script([call("list_loans", "l1")], "You have one loan.")
    loans = await c.session.run(user_input="Meanwhile, what loans do I have?")
    loans.expect[1].is_function_call_output(is_error=False)
    assert await c.checking() == before  # nothing paid yet

    (request,) = await c.pending()
    assert request["binding_message"].startswith("Pay 750.00 USD to ")
    assert request["authorization_details"][0]["amount"] == "750.00"
    assert await c.decide(request["auth_req_id"], "approve") == 200
    c.clock.running.set()
    await c.state.approvals.settled()

    told = said(c.session)[-1]
    assert told.startswith("You approved the payment of 750.00 USD to ")
    assert told.endswith("has been made.")
    assert before - await c.checking() == Decimal("750.00")
    assert len(c.polls) == 1  # decided before the first poll was due


async def test_declined_in_the_app_is_told_and_no_money_moves(approval_call: ApprovalCall) -> None:
    c = approval_call
    before = await c.checking()
    await _confirmed_750(c)
    (request,) = await c.pending()
    assert await c.decide(request["auth_req_id"], "deny") == 200
    c.clock.running.set()
    await c.state.approvals.settled()
    assert said(c.session)[-1].startswith("You declined the payment of 750.00 USD")
    assert await c.checking() == before


async def test_nobody_deciding_is_told_as_expired(approval_call: ApprovalCall) -> None:
    c = approval_call
    before = await c.checking()
    await _confirmed_750(c)
    c.clock.running.set()
    await c.state.approvals.settled()
    assert said(c.session)[-1].startswith("The approval request for the payment of 750.00 USD")
    assert "expired" in said(c.session)[-1]
    assert await c.checking() == before
    # Polled at the issuer's interval: 120 s / 2 s, plus the poll that heard expired_token.
    assert len(c.polls) <= 120 / 2 + 1


async def test_hanging_up_cancels_the_wait_and_the_app_can_no_longer_approve(
    approval_call: ApprovalCall,
) -> None:
    c = approval_call
    await _confirmed_750(c)
    waiting = said(c.session)[-1]
    (request,) = await c.pending()
    # What VoiceCall.end does when the caller hangs up: cancel the waits, then revoke the family.
    await c.state.approvals.cancel()
    assert len(c.state.approvals) == 0
    await c.bank._tokens.revoke()  # as CallBank.end revokes it
    answer = await c.issuer.post(
        f"{ISSUER}/approvals/{request['auth_req_id']}",
        json={"decision": "approve"},
        headers=await c.app_bearer(),
    )
    assert (answer.status_code, answer.json()["error"]) == (409, "session_ended")
    assert said(c.session)[-1] == waiting  # nothing more was said, nothing was paid
