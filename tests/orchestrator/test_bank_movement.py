"""The movement a payment's token is bound to: its authorization details and its binding message."""

from __future__ import annotations

import json

from orchestrator._bank._movement import MAX_BINDING_MESSAGE, Movement, binding_message


def test_authorization_details_hold_exactly_one_movement() -> None:
    payment = Movement("payment", "acc_1", "pye_1", "25.00", "USD", "k-1", "Pay Jane")
    assert json.loads(payment.authorization_details()) == [
        {
            "type": "payment",
            "from_account_id": "acc_1",
            "payee_id": "pye_1",
            "amount": "25.00",
            "idempotency_key": "k-1",
            "currency": "USD",
        }
    ]
    transfer = Movement("transfer", "acc_1", "acc_2", "5", "USD", "k-2")
    assert transfer.tool == "transfer_between_accounts"
    assert transfer.arguments() == {
        "from_account_id": "acc_1",
        "to_account_id": "acc_2",
        "amount": "5",
        "idempotency_key": "k-2",
    }
    assert transfer.binding_message() == "Transfer 5 USD"


def test_the_binding_message_is_what_the_issuer_accepts() -> None:
    assert binding_message("Pay 25.00 USD to Jane\x1b[2J\u202e") == "Pay 25.00 USD to Jane[2J"
    assert binding_message("  Pay\n\t25  ") == "Pay 25"
    long = binding_message("Pay 25.00 USD to " + "Greenfield Apartments " * 5)
    assert len(long) == MAX_BINDING_MESSAGE
    assert long.endswith("…")
