"""The demo's payments above the approval threshold: a simulated banking app approves or declines them.

The caller's banking app is played by its backend (client `backend`, scope `approvals:decide`), which
lists the user's pending approvals over the issuer's HTTP API and decides one, as a real app would after
the user tapped a button. Everything else is the real agent, token manager, issuer and MCP server.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from livekit.agents import AgentSession, llm
from livekit.agents.voice.run_result import RunResult

from keys import assertion_form, load_client_key
from orchestrator._agent._banking_agent import CallState
from orchestrator._bank._movement import Movement
from orchestrator._commands._demo._call import play_turn, script_confirmation, script_payment
from orchestrator._commands._demo._scripted_llm import ScriptedLLM, call
from orchestrator._commands._demo._timeline import Timeline
from orchestrator._tokens._dpop import CallKey
from orchestrator._tokens._manager import TokenManager

__all__ = ["BankingApp", "PaymentsDemo"]

USER = "alice"
MCP_HEADERS = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28"}
APP_POLL = 0.25  # how often the simulated app looks for a new request (a real app is pushed one)
APP_PATIENCE = 30.0


class BankingApp:
    """The user's banking app, through its backend: sees pending approvals, approves or declines one."""

    def __init__(self, http: httpx.AsyncClient, issuer_url: str, state: Path) -> None:
        self._http = http
        self._issuer = issuer_url
        self._key = load_client_key(state, "backend")

    async def _bearer(self) -> dict[str, str]:
        form = {"grant_type": "client_credentials", "scope": "approvals:decide"}
        form |= assertion_form("backend", self._key, f"{self._issuer}/token", time.time())
        answer = await self._http.post(f"{self._issuer}/token", data=form)
        answer.raise_for_status()
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    async def next_request(self) -> dict[str, Any] | None:
        """The user's oldest pending approval, waiting for one to arrive (None after a while)."""
        headers = await self._bearer()
        deadline = time.monotonic() + APP_PATIENCE
        while time.monotonic() < deadline:
            listed = await self._http.get(
                f"{self._issuer}/approvals", params={"user_id": USER}, headers=headers
            )
            approvals = listed.json().get("approvals", []) if listed.status_code == 200 else []
            if approvals:
                first: dict[str, Any] = approvals[0]
                return first
            await asyncio.sleep(APP_POLL)
        return None

    async def decide(self, request: dict[str, Any], decision: str) -> int:
        answer = await self._http.post(
            f"{self._issuer}/approvals/{request['auth_req_id']}",
            json={"decision": decision},
            headers=await self._bearer(),
        )
        return answer.status_code


def _said(session: AgentSession[CallState]) -> list[str]:
    return [
        item.text_content or ""
        for item in session.history.items
        if isinstance(item, llm.ChatMessage) and item.role == "assistant"
    ]


def _resolved(call_state: CallState, kind: str, words: str) -> str:
    """The bank id behind the reference whose spoken label contains `words` ("checking", "City Power")."""
    for ref, label in call_state.labels.items():
        if ref.startswith(f"{kind}-") and words.lower() in label.lower():
            return call_state.refs.resolve(kind, ref)
    raise LookupError(words)


@dataclass
class PaymentsDemo:
    """Section 5 of the demo: approval in the banking app, a declined payment, a refused substitution."""

    timeline: Timeline
    session: AgentSession[CallState]
    scripted: ScriptedLLM
    call_state: CallState
    tokens: TokenManager
    http: httpx.AsyncClient
    issuer_url: str
    resource_url: str
    app: BankingApp
    call_key: CallKey | None = None

    async def balance(self) -> Decimal:
        accounts = (await self._read_balances())["accounts"]
        return Decimal(next(a["balance"] for a in accounts if a["type"] == "checking"))

    async def _read_balances(self) -> dict[str, Any]:
        self.scripted.script([call("get_balance", "bal-check", account_type="checking")], "Let me check.")
        result: RunResult[None] = await self.session.run(user_input="What's my checking balance now?")
        for event in reversed(result.events):
            output = getattr(event.item, "output", None)
            if isinstance(output, str) and '"accounts"' in output:
                parsed: dict[str, Any] = json.loads(output)
                return parsed
        return {"accounts": []}

    async def run(self) -> None:
        t = self.timeline
        t.section("5. Payments the caller approves in their banking app")
        before = await self.balance()
        await self.approved(before)
        await self.declined()
        await self.not_what_was_confirmed()
        await self.substituted_payee()

    async def _wait_then(self, decision: str) -> dict[str, Any] | None:
        request = await self.app.next_request()
        if request is None:
            return None
        detail = request["authorization_details"][0]
        self.timeline.step(
            "The banking app shows the request",
            f"“{request['binding_message']}” ({detail['amount']} {detail['currency']}): they tap {decision}",
        )
        status = await self.app.decide(request, decision)
        self.timeline.check(status == 200, f"Decision sent: {decision}", f"POST /approvals/… HTTP {status}")
        await self.call_state.approvals.settled()
        return request

    async def approved(self, before: Decimal) -> None:
        t = self.timeline
        script_payment(self.scripted, "Greenfield", "750.00", "checking")
        await play_turn(self.session, t, "Pay my rent to Greenfield Apartments, seven hundred fifty.")
        script_confirmation(self.scripted, reports=False)
        await play_turn(self.session, t, "Yes, that's right.")
        waiting = _said(self.session)[-1]
        t.check(
            "approval in your banking app" in waiting and len(self.call_state.approvals) == 1,
            "Above the threshold: the agent says the payment waits for the caller's approval",
            "interaction_required → POST /bc-authorize; the conversation goes on while it waits",
        )
        if await self._wait_then("approve") is None:
            t.step("The banking app saw no approval request", ok=False)
            return
        told = _said(self.session)[-1]
        t.say("agent", told)
        after = await self.balance()
        t.check(
            "has been made" in told and before - after == Decimal("750.00"),
            "Approved in the app, then paid with a token bound to exactly that payment",
            f"checking {before} → {after}",
        )

    async def declined(self) -> None:
        t = self.timeline
        before = await self.balance()
        script_payment(self.scripted, "Bob", "600.00", "checking")
        await play_turn(self.session, t, "Send Bob Martin six hundred.")
        script_confirmation(self.scripted, reports=False)
        await play_turn(self.session, t, "Yes.")
        if await self._wait_then("deny") is None:
            t.step("The banking app saw no approval request", ok=False)
            return
        told = _said(self.session)[-1]
        t.say("agent", told)
        t.check(
            "declined" in told and await self.balance() == before,
            "Declined in the app: the agent says so, and no money moved",
        )

    async def not_what_was_confirmed(self) -> None:
        t = self.timeline
        before = await self.balance()
        script_payment(self.scripted, "City Power", "40.00", "checking")
        await play_turn(self.session, t, "Pay City Power forty dollars.")
        # The model calls the payment tool with another amount than the one the caller confirmed.
        script_confirmation(self.scripted, reports=False, amount="2500.00")
        await play_turn(self.session, t, "Yes, forty.")
        told = _said(self.session)[-1]
        t.check(
            "not exactly what you confirmed" in told and await self.balance() == before,
            "The model asked for 2500.00 after the caller confirmed 40.00: refused, said plainly",
            "no token asked for, no money moved",
        )

    async def substituted_payee(self) -> None:
        """A token approved for one payee, presented for another: the MCP server refuses it with 403."""
        t = self.timeline
        checking = _resolved(self.call_state, "account", "checking")
        approved_for = _resolved(self.call_state, "payee", "City Power")
        movement = Movement(
            "payment",
            checking,
            approved_for,
            "520.00",
            "USD",
            "demo-substitution",
            "Pay 520.00 USD to City Power",
        )
        request = await self.tokens.request_approval(movement)
        waiter = asyncio.create_task(self.tokens.await_approval(request))
        if await self._wait_then("approve") is None:
            waiter.cancel()
            t.step("The banking app saw no approval request", ok=False)
            return
        access = await waiter
        before = await self.balance()
        arguments = movement.arguments() | {"payee_id": _resolved(self.call_state, "payee", "Bob")}
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "make_payment", "arguments": arguments},
        }
        headers = {
            **MCP_HEADERS,
            "mcp-method": "tools/call",
            "mcp-name": "make_payment",
            "authorization": f"{access.scheme} {access.token}",
        }
        if access.scheme == "DPoP" and self.call_key is not None:
            # The call's own key proves it: the one thing wrong with this request is the payee.
            headers["dpop"] = self.call_key.proof("POST", self.resource_url, access_token=access.token)
        answer = await self.http.post(self.resource_url, json=body, headers=headers)
        challenge = answer.headers.get("www-authenticate", "")
        t.check(
            answer.status_code == 403
            and 'error="insufficient_authorization_details"' in challenge
            and await self.balance() == before,
            "A token approved for City Power, presented to pay Bob Martin, is refused",
            f"HTTP {answer.status_code} WWW-Authenticate: {challenge}",
        )
