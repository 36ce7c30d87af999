"""The confirmation classifier and the per-call references."""

from __future__ import annotations

import pytest

from orchestrator._agent._confirmation import classify_answer
from orchestrator._agent._refs import RefTable, UnknownRef


@pytest.mark.parametrize(
    "text", ["Yes", "yes please", "Yeah, go ahead.", "OK", "that's correct", "Confirm", "sure, do it", "Yep!"]
)
def test_yes(text: str) -> None:
    assert classify_answer(text) == "yes"


@pytest.mark.parametrize(
    "text",
    [
        "No",
        "no thanks",
        "Don't",
        "don\u2019t do that",
        "yes, but not from checking",
        "cancel it",
        "wait",
        "nope",
    ],
)
def test_no_wins(text: str) -> None:
    assert classify_answer(text) == "no"


@pytest.mark.parametrize("text", ["", "hmm", "maybe later", "how much is it again?", "alright then"])
def test_unclear(text: str) -> None:
    assert classify_answer(text) == "unclear"


def test_refs_are_stable_per_kind_and_resolve_back() -> None:
    refs = RefTable()
    data = {
        "accounts": [{"account_id": "acc-1234567890"}, {"account_id": "acc-999"}],
        "payees": [{"payee_id": "acc-999", "name": "Jane"}],
        "transactions": [{"transaction_id": "t1", "account_id": "acc-1234567890", "amount": "1.00"}],
    }
    assert refs.replace_ids(data) == {
        "accounts": [{"account_id": "account-1"}, {"account_id": "account-2"}],
        "payees": [{"payee_id": "payee-1", "name": "Jane"}],
        "transactions": [{"transaction_id": "transaction-1", "account_id": "account-1", "amount": "1.00"}],
    }
    assert refs.resolve("account", "Account-1 ") == "acc-1234567890"
    assert refs.resolve("payee", "payee-1") == "acc-999"
    with pytest.raises(UnknownRef):
        refs.resolve("payee", "account-1")
    with pytest.raises(UnknownRef):
        refs.resolve("account", "account-9")
