"""The demo's scripted call: what the caller says and what the stand-in LLM does, turn by turn.

Only the words and the model's choices are scripted; the agent, its function tools, the masking, the
token manager and the MCP client are the real code, talking to the real issuer and MCP server.
"""

from __future__ import annotations

import json
from typing import Any

from livekit.agents import llm
from livekit.agents.voice.run_result import (
    ChatMessageEvent,
    FunctionCallEvent,
    FunctionCallOutputEvent,
    RunResult,
)

from orchestrator._commands._demo._scripted_llm import ScriptedLLM, call
from orchestrator._commands._demo._timeline import Timeline

__all__ = ["last_call", "last_output", "play_turn", "script_confirmation", "script_payment", "speak_balances"]


def last_output(ctx: llm.ChatContext, tool: str | None = None) -> dict[str, Any]:
    """The latest tool output the LLM was given (already masked), as JSON."""
    for item in reversed(ctx.items):
        if isinstance(item, llm.FunctionCallOutput) and (tool is None or item.name == tool):
            try:
                parsed = json.loads(item.output)
            except ValueError:
                return {"text": item.output}
            return parsed if isinstance(parsed, dict) else {"value": parsed}
    return {}


def speak_balances(ctx: llm.ChatContext) -> str:
    accounts = last_output(ctx, "get_balance").get("accounts", [])
    parts = [f"{a['type']} {a['account_number']}: {a['balance']} {a['currency']}" for a in accounts]
    return "Here are your balances. " + "; ".join(parts) + "." if parts else "I could not read your balances."


def speak_transactions(ctx: llm.ChatContext) -> str:
    rows = last_output(ctx, "list_transactions").get("transactions", [])[:3]
    parts = [f"{t['amount']} {t['description']}" for t in rows]
    return "Your latest transactions: " + "; ".join(parts) + "." if parts else "No recent transactions."


def _ref(items: list[dict[str, Any]], key: str, field: str, wanted: str) -> str | None:
    for item in items:
        if wanted.lower() in str(item.get(field, "")).lower():
            return str(item[key])
    return None


def script_payment(scripted: ScriptedLLM, payee: str, amount: str, account_type: str) -> None:
    """The model looks up payees, then prepares the payment from the account of that type."""

    def prepare(ctx: llm.ChatContext) -> list[llm.FunctionToolCall]:
        payees = last_output(ctx, "list_payees").get("payees", [])
        accounts = last_output(ctx, "get_balance").get("accounts", [])
        payee_ref = _ref(payees, "payee_id", "name", payee) or "payee-unknown"
        account_ref = _ref(accounts, "account_id", "type", account_type) or "account-unknown"
        return [call("prepare_payment", "pay-1", from_account=account_ref, payee=payee_ref, amount=amount)]

    def read_back(ctx: llm.ChatContext) -> str:
        summary = last_output(ctx, "prepare_payment")
        return f"{summary.get('summary', 'I prepared the payment.')} Shall I go ahead?"

    scripted.script([call("list_payees", "payees-1")], prepare, read_back)


def last_call(ctx: llm.ChatContext, tool: str) -> dict[str, Any]:
    """The arguments of the latest call of `tool` the LLM made."""
    for item in reversed(ctx.items):
        if isinstance(item, llm.FunctionCall) and item.name == tool:
            parsed = json.loads(item.arguments or "{}")
            return parsed if isinstance(parsed, dict) else {}
    return {}


def script_confirmation(scripted: ScriptedLLM, *, reports: bool = True, **changed: str) -> None:
    """After the caller's yes: make the prepared payment, restating what was prepared, then report it.

    `changed` replaces restated arguments: a model that gets the payment wrong. Without `reports` the
    model is not asked to speak afterwards (the agent itself tells the caller what happened).
    """

    def confirm(ctx: llm.ChatContext) -> list[llm.FunctionToolCall]:
        confirmation = str(last_output(ctx, "prepare_payment").get("confirmation_id", ""))
        prepared = last_call(ctx, "prepare_payment")
        restated = {name: str(prepared.get(name, "")) for name in ("from_account", "payee", "amount")}
        return [call("make_payment", "pay-2", confirmation_id=confirmation, **(restated | changed))]

    def report(ctx: llm.ChatContext) -> str:
        done = last_output(ctx, "make_payment")
        if done.get("status") == "completed":
            paid = f"{done['amount']} {done['currency']}"
            return f"Done: {paid} paid. Your balance is now {done['balance_after']}."
        return str(done.get("error") or done.get("text") or "The payment did not go through.")

    if reports:
        scripted.script(confirm, report)
    else:
        scripted.script(confirm)


async def play_turn(session: Any, timeline: Timeline, text: str) -> RunResult[None]:
    """One caller turn through `AgentSession.run`, printed as caller, tool calls and agent replies."""
    timeline.say("caller", text)
    result: RunResult[None] = await session.run(user_input=text)
    for event in result.events:
        if isinstance(event, FunctionCallEvent):
            timeline.say("tool", f"{event.item.name}({event.item.arguments})")
        elif isinstance(event, FunctionCallOutputEvent):
            output = event.item.output
            timeline.say("tool", f"→ {output[:160]}{'…' if len(output) > 160 else ''}")
        elif isinstance(event, ChatMessageEvent) and event.item.role == "assistant":
            timeline.say("agent", event.item.text_content or "")
    return result
