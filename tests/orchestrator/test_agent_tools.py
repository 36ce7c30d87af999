"""The banking agent driven through livekit-agents' own `AgentSession.run` with a scripted LLM."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from livekit.agents import AgentSession

from orchestrator import AuthorizationLost, BankingAgent, CallerIdentity, CallState, ServiceUnavailable
from orchestrator._agent._speech import AUTHORIZATION_LOST, SERVICE_UNAVAILABLE
from tests.support.agent import MemoryBank, ScriptedLLM, call

GRANT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


@dataclass
class Call:
    session: AgentSession[CallState]
    llm: ScriptedLLM
    bank: MemoryBank
    state: CallState


@pytest.fixture
async def bank_call() -> AsyncIterator[Call]:
    bank = MemoryBank()
    scripted = ScriptedLLM()
    state = CallState(identity=CallerIdentity("alice", "room-1", GRANT))
    keys = iter(f"key-{n}" for n in range(1, 100))
    async with AgentSession[CallState](llm=scripted, userdata=state) as session:
        await session.start(BankingAgent(bank, new_idempotency_key=lambda: next(keys)))
        yield Call(session, scripted, bank, state)


def output_of(result_event: object) -> dict[str, object]:
    return json.loads(result_event.item.output)  # type: ignore[attr-defined, no-any-return]


async def test_balance_question(bank_call: Call) -> None:
    bank_call.llm.script([call("get_balance", "c1")], "Your checking account ending in 1234 has 120 dollars.")

    result = await bank_call.session.run(user_input="What's my balance?")

    result.expect.next_event().is_function_call(name="get_balance")
    out = result.expect.next_event().is_function_call_output(is_error=False).event()
    result.expect.next_event().is_message(role="assistant")
    result.expect.no_more_events()
    accounts = output_of(out)["accounts"]
    assert accounts[0] == {  # type: ignore[index]
        "account_id": "account-1",
        "type": "checking",
        "account_number": "****1234",
        "balance": "120.00",
        "currency": "USD",
        "status": "open",
    }
    assert bank_call.bank.calls == ["get_balance"]


async def _learn_refs(c: Call) -> None:
    c.llm.script([call("get_balance", "c1"), call("list_payees", "c2")], "I see your accounts and payees.")
    await c.session.run(user_input="Show me my accounts and who I can pay.")


async def test_payment_with_confirmation_moves_money_once(bank_call: Call) -> None:
    await _learn_refs(bank_call)
    bank_call.llm.script(
        [call("prepare_payment", "p1", from_account="account-1", payee="payee-1", amount="25.00")],
        "Pay 25.00 from your checking account ending in 1234 to Jane S. Shall I go ahead?",
    )
    prepared = await bank_call.session.run(user_input="Pay Jane twenty five dollars from checking.")
    summary = output_of(prepared.expect[1].is_function_call_output(is_error=False).event())
    assert summary["confirmation_id"] == "confirm-1"
    assert summary["summary"] == "Pay 25.00 from your checking account ending in 1234 to Jane S.."
    assert "make_payment" not in bank_call.bank.calls

    bank_call.llm.script(
        [
            call(
                "make_payment",
                "m1",
                confirmation_id="confirm-1",
                from_account="account-1",
                payee="payee-1",
                amount="25.00",
            )
        ],
        "Done.",
    )
    paid = await bank_call.session.run(user_input="Yes, go ahead.")

    paid.expect.next_event().is_function_call(name="make_payment")
    out = output_of(paid.expect.next_event().is_function_call_output(is_error=False).event())
    assert out["status"] == "completed"
    assert out["payee_id"] == "payee-1"
    assert out["from_account_id"] == "account-1"
    assert bank_call.bank.accounts["acc-000111222333"].balance == 95
    assert list(bank_call.bank.payments) == ["key-1"]

    # The same confirmation cannot be spent twice, even when the customer says yes again.
    bank_call.llm.script(
        [
            call(
                "make_payment",
                "m2",
                confirmation_id="confirm-1",
                from_account="account-1",
                payee="payee-1",
                amount="25.00",
            )
        ],
        "Already done.",
    )
    again = await bank_call.session.run(user_input="Yes, do it again.")
    again.expect[1].is_function_call_output(is_error=True)
    assert bank_call.bank.calls.count("make_payment") == 1
    assert bank_call.bank.accounts["acc-000111222333"].balance == 95


async def test_payment_without_confirmation_never_reaches_the_bank(bank_call: Call) -> None:
    await _learn_refs(bank_call)
    # The LLM tries to pay in the same turn it prepared, before the customer answered.
    bank_call.llm.script(
        [call("prepare_payment", "p1", from_account="account-1", payee="payee-1", amount="25.00")],
        [
            call(
                "make_payment",
                "m1",
                confirmation_id="confirm-1",
                from_account="account-1",
                payee="payee-1",
                amount="25.00",
            )
        ],
        "Please confirm.",
    )
    result = await bank_call.session.run(user_input="Pay Jane 25 dollars.")
    refused = result.expect[3].is_function_call_output(is_error=True).event()
    assert "has not confirmed" in refused.item.output

    # A "no" cancels the pending payment for good.
    bank_call.llm.script(
        [
            call(
                "make_payment",
                "m2",
                confirmation_id="confirm-1",
                from_account="account-1",
                payee="payee-1",
                amount="25.00",
            )
        ],
        "Cancelled.",
    )
    declined = await bank_call.session.run(user_input="No, don't.")
    assert "did not confirm" in declined.expect[1].is_function_call_output(is_error=True).event().item.output
    bank_call.llm.script(
        [
            call(
                "make_payment",
                "m3",
                confirmation_id="confirm-1",
                from_account="account-1",
                payee="payee-1",
                amount="25.00",
            )
        ],
        "Nothing to do.",
    )
    late = await bank_call.session.run(user_input="Yes.")
    assert "no payment waiting" in late.expect[1].is_function_call_output(is_error=True).event().item.output

    # An unclear answer and a wrong confirmation id are refused too.
    bank_call.llm.script(
        [call("prepare_payment", "p2", from_account="account-1", payee="payee-2", amount="5")], "Confirm?"
    )
    await bank_call.session.run(user_input="Pay Robert five.")
    bank_call.llm.script(
        [
            call(
                "make_payment",
                "m4",
                confirmation_id="confirm-1",
                from_account="account-1",
                payee="payee-2",
                amount="5",
            )
        ],
        [
            call(
                "make_payment",
                "m5",
                confirmation_id="confirm-2",
                from_account="account-1",
                payee="payee-2",
                amount="5",
            )
        ],
        "Hmm.",
    )
    unclear = await bank_call.session.run(user_input="Hmm, maybe later.")
    assert (
        "no payment waiting" in unclear.expect[1].is_function_call_output(is_error=True).event().item.output
    )
    assert "not a clear yes" in unclear.expect[3].is_function_call_output(is_error=True).event().item.output

    assert "make_payment" not in bank_call.bank.calls
    assert bank_call.bank.payments == {}


async def test_insufficient_funds_is_spoken_clearly(bank_call: Call) -> None:
    await _learn_refs(bank_call)
    bank_call.llm.script(
        [call("prepare_payment", "p1", from_account="account-1", payee="payee-1", amount="500.00")],
        "Confirm?",
    )
    await bank_call.session.run(user_input="Pay Jane 500.")
    bank_call.llm.script(
        [
            call(
                "make_payment",
                "m1",
                confirmation_id="confirm-1",
                from_account="account-1",
                payee="payee-1",
                amount="500.00",
            )
        ],
        lambda ctx: ctx.items[-1].output,  # the LLM reads the tool's sentence out
    )
    result = await bank_call.session.run(user_input="Yes.")

    result.expect[1].is_function_call_output(
        output="Insufficient funds in account ending 1234.", is_error=True
    )
    message = result.expect[2].is_message(role="assistant").event().item
    assert message.text_content == "Insufficient funds in account ending 1234."
    assert bank_call.state.pending is None  # a refusal is final
    assert bank_call.bank.accounts["acc-000111222333"].balance == 120


async def test_unreachable_bank_is_spoken_and_a_retry_keeps_the_idempotency_key(bank_call: Call) -> None:
    await _learn_refs(bank_call)
    bank_call.llm.script(
        [call("prepare_payment", "p1", from_account="account-1", payee="payee-2", amount="10.00")], "Confirm?"
    )
    await bank_call.session.run(user_input="Pay Robert ten.")

    bank_call.bank.fail_with = ServiceUnavailable("issuer down")
    bank_call.llm.script(
        [
            call(
                "make_payment",
                "m1",
                confirmation_id="confirm-1",
                from_account="account-1",
                payee="payee-2",
                amount="10.00",
            )
        ],
        SERVICE_UNAVAILABLE,
    )
    failed = await bank_call.session.run(user_input="Yes please.")
    failed.expect[1].is_function_call_output(output=SERVICE_UNAVAILABLE, is_error=True)
    assert bank_call.state.pending is not None

    bank_call.bank.fail_with = None
    bank_call.llm.script(
        [
            call(
                "make_payment",
                "m2",
                confirmation_id="confirm-1",
                from_account="account-1",
                payee="payee-2",
                amount="10.00",
            )
        ],
        "Paid.",
    )
    retried = await bank_call.session.run(user_input="Yes, try again.")
    retried.expect[1].is_function_call_output(is_error=False)
    assert bank_call.bank.calls.count("make_payment") == 2
    assert list(bank_call.bank.payments) == ["key-1"]  # both attempts carried the same key
    assert bank_call.bank.accounts["acc-000111222333"].balance == 110


async def test_authorization_lost_is_said_and_no_tool_reaches_the_bank_afterwards(bank_call: Call) -> None:
    bank_call.bank.fail_with = AuthorizationLost("family revoked")
    bank_call.llm.script([call("get_balance", "c1"), call("list_payees", "c0")])
    result = await bank_call.session.run(user_input="What's my balance?")

    result.expect.contains_message(role="assistant")
    spoken = [
        e.item.text_content for e in result.events if e.type == "message" and e.item.role == "assistant"
    ]
    assert spoken == [AUTHORIZATION_LOST]  # once, though two tools were called
    assert bank_call.state.authorization_lost
    assert bank_call.bank.calls == ["get_balance"]  # the second call was refused before the bank

    bank_call.bank.fail_with = None
    bank_call.llm.script(
        [
            call("get_balance", "c2"),
            call("list_payees", "c3"),
            call("list_transactions", "c4"),
            call("prepare_payment", "c5", from_account="account-1", payee="payee-1", amount="1"),
        ],
        AUTHORIZATION_LOST,
    )
    later = await bank_call.session.run(user_input="Try again?")
    for index in (4, 5, 6, 7):
        later.expect[index].is_function_call_output(output=AUTHORIZATION_LOST, is_error=True)
    assert bank_call.bank.calls == ["get_balance"]


async def test_transfer_needs_confirmation_too(bank_call: Call) -> None:
    await _learn_refs(bank_call)
    bank_call.llm.script(
        [call("prepare_transfer", "t1", from_account="account-2", to_account="account-1", amount="100")],
        "Move 100 from savings to checking?",
    )
    prepared = await bank_call.session.run(user_input="Move 100 from savings to checking.")
    summary = output_of(prepared.expect[1].is_function_call_output().event())["summary"]
    assert (
        summary
        == "Move 100 from your savings account ending in 7777 to your checking account ending in 1234."
    )

    bank_call.llm.script(
        [
            call(
                "make_payment",
                "x",
                confirmation_id="confirm-1",
                from_account="account-2",
                payee="payee-1",
                amount="100",
            )
        ],
        "Oops.",
    )
    wrong_tool = await bank_call.session.run(user_input="Yes.")
    wrong_tool.expect[1].is_function_call_output(is_error=True)

    bank_call.llm.script(
        [
            call(
                "make_transfer",
                "t2",
                confirmation_id="confirm-1",
                from_account="account-2",
                to_account="account-1",
                amount="100.00",
            )
        ],
        "Done.",
    )
    done = await bank_call.session.run(user_input="Yes, correct.")
    done.expect[1].is_function_call_output(is_error=False)
    assert bank_call.bank.accounts["acc-000444555666"].balance == 4900
    assert bank_call.bank.accounts["acc-000111222333"].balance == 220


async def test_bad_references_and_amounts_are_refused_before_the_bank(bank_call: Call) -> None:
    await _learn_refs(bank_call)
    bank_call.llm.script(
        [
            call("prepare_payment", "p1", from_account="acc-000111222333", payee="payee-1", amount="5"),
            call("prepare_payment", "p2", from_account="account-1", payee="account-2", amount="5"),
            call("prepare_payment", "p3", from_account="account-1", payee="payee-1", amount="-5"),
            call("prepare_payment", "p4", from_account="account-1", payee="payee-1", amount="1.234"),
            call("list_transactions", "p5", account="payee-1"),
        ],
        "Sorry.",
    )
    result = await bank_call.session.run(user_input="Pay.")
    for index in range(5, 10):
        result.expect[index].is_function_call_output(is_error=True)
    assert bank_call.state.pending is None
    assert bank_call.bank.calls == ["get_balance", "list_payees"]


async def test_other_read_tools_and_settings(bank_call: Call) -> None:
    bank_call.llm.script(
        [
            call("list_loans", "l1"),
            call("list_transactions", "l2", limit=5),
            call("update_notification_settings", "l3", low_balance_alert=True, channel="email"),
        ],
        "Done.",
    )
    result = await bank_call.session.run(user_input="Loans, transactions, and email me on low balance.")
    assert output_of(result.expect[3].is_function_call_output().event()) == {"loans": []}
    settings = output_of(result.expect[5].is_function_call_output().event())["settings"]
    assert settings["channel"] == "email"  # type: ignore[index]
    assert bank_call.bank.calls == ["list_loans", "list_transactions", "update_notification_settings"]
