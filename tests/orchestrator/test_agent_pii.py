"""No PII reaches the LLM or the speech: checked on the exact contexts the scripted LLM was given."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from livekit.agents import AgentSession

from orchestrator import BankingAgent, CallerIdentity, CallState
from tests.support.agent import MemoryBank, ScriptedLLM, call

GRANT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
REFRESH = "Qm9iIGFuZCBBbGljZSBzaGFyZSBhIHNlY3JldA7x"

FULL_NUMBERS = ["4000123412341234", "4000555566667777", "9876543210", "55554444", "4111 1111 1111 1111"]
BANK_IDS = ["acc-000111222333", "acc-000444555666", "pay-77001234567", "txn-20261124000001"]


@pytest.fixture
async def session_and_llm() -> AsyncIterator[tuple[AgentSession[CallState], ScriptedLLM]]:
    scripted = ScriptedLLM()
    state = CallState(identity=CallerIdentity("alice", "room-1", GRANT))
    async with AgentSession[CallState](llm=scripted, userdata=state) as session:
        await session.start(BankingAgent(MemoryBank()))
        yield session, scripted


async def test_nothing_sensitive_in_what_the_llm_receives(
    session_and_llm: tuple[AgentSession[CallState], ScriptedLLM],
) -> None:
    session, scripted = session_and_llm
    scripted.script(
        [call("get_balance", "c1"), call("list_payees", "c2"), call("list_transactions", "c3")],
        "Here you go.",
        "Anything else?",
    )
    await session.run(user_input="Balances, payees and my last transactions please.")
    await session.run(user_input=f"My card is 4111-1111-1111-1111 and my token is Bearer {REFRESH}.")

    seen = scripted.seen_text()
    for secret in [
        *FULL_NUMBERS,
        "4111-1111-1111-1111",
        *BANK_IDS,
        "Jane Smith",
        "Robert Brown",
        GRANT,
        REFRESH,
    ]:
        assert secret not in seen
    assert "eyJ" not in seen
    # What remains is still useful: last four digits, short names, references.
    for kept in [
        "****1234",
        "****7777",
        "****3210",
        "****1111",
        "Jane S.",
        "Robert B.",
        "account-1",
        "payee-2",
    ]:
        assert kept in seen
    assert "2026-11-24T10:00:00Z" in seen  # dates are not account numbers


async def test_a_name_the_user_said_is_kept(
    session_and_llm: tuple[AgentSession[CallState], ScriptedLLM],
) -> None:
    session, scripted = session_and_llm
    scripted.script([call("list_payees", "c1")], "Found her.")
    result = await session.run(user_input="Can I pay jane smith?")

    payees = result.expect[1].is_function_call_output().event().item.output
    assert "Jane Smith" in payees
    assert "Robert B." in payees
    assert "Robert Brown" not in scripted.seen_text()


async def test_spoken_text_is_masked(session_and_llm: tuple[AgentSession[CallState], ScriptedLLM]) -> None:
    session, scripted = session_and_llm
    scripted.script([call("list_payees", "c1")], "Paying Jane Smith at 9876 5432 10. Token " + GRANT + " ok")
    result = await session.run(user_input="Who can I pay?")

    spoken = result.expect[2].is_message(role="assistant").event().item.text_content
    assert spoken == "Paying Jane S. at ending in 3210. Token [redacted] ok"
    assert "Jane Smith" not in str(session.history.to_dict())
