"""Payments above the threshold on real processes: the app backend decides while the orchestrator polls."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest

from orchestrator import ApprovalDeclined, ApprovalRequired, CallBank, ConnectionSettings, Movement, open_bank
from tests.support.e2e import Stack, bearer, issuer_client, mcp_post, new_call

pytestmark = pytest.mark.e2e


async def _decide(http: httpx.AsyncClient, stack: Stack, decision: str) -> dict[str, Any]:
    """What the user's banking app does: list alice's pending approvals, decide the one there is."""
    headers = {"Authorization": f"Bearer {await bearer(http, stack, 'backend', 'approvals:decide')}"}
    listed = await http.get("/approvals", params={"user_id": "alice"}, headers=headers)
    assert listed.status_code == 200, listed.text
    (request,) = listed.json()["approvals"]
    decided = await http.post(
        f"/approvals/{request['auth_req_id']}", json={"decision": decision}, headers=headers
    )
    assert decided.status_code == 200, decided.text
    return dict(request)


async def test_an_approval_decided_through_the_backend_while_the_orchestrator_polls(stack: Stack) -> None:
    # The agent's calls go to issuer replica 0, the app's backend to replica 1: one Redis between them.
    backend_http, _ = issuer_client(stack, target=1)
    settings = ConnectionSettings(
        issuer_url=stack.issuer,
        mcp_url=stack.mcp_urls[0],
        orchestrator_client_id="orchestrator",
        orchestrator_client_key=None,
        voicebank_state=stack.state,
    )
    async with backend_http:
        identity = await new_call(backend_http, stack)
        bank = await open_bank(settings, identity)
        assert isinstance(bank, CallBank)
        checking, payee = stack.account(), stack.payee()
        before = Decimal(stack.balance())
        rent = Movement(
            "payment", checking, payee, "750.00", "USD", "e2e-rent", "Pay 750.00 USD to the landlord"
        )
        try:
            with pytest.raises(ApprovalRequired) as waiting:
                await bank.make_payment(checking, payee, "750.00", "e2e-rent", confirmed=rent)
            assert Decimal(stack.balance()) == before  # nothing paid before the user approves
            # The orchestrator polls (at the issuer's 2 s interval) while the user decides in their app.
            polling = asyncio.create_task(waiting.value.approval.outcome())
            request = await _decide(backend_http, stack, "approve")
            assert request["binding_message"] == "Pay 750.00 USD to the landlord"
            assert request["sid"] == identity.session_id
            paid = await asyncio.wait_for(polling, timeout=30)
            assert (paid["status"], paid["amount"]) == ("completed", "750.00")
            assert Decimal(stack.balance()) == before - Decimal("750.00")

            # Declined: the orchestrator hears access_denied, nothing moves.
            gift = Movement("payment", checking, payee, "600.00", "USD", "e2e-gift", "Pay 600.00 USD")
            with pytest.raises(ApprovalRequired) as second:
                await bank.make_payment(checking, payee, "600.00", "e2e-gift", confirmed=gift)
            polling = asyncio.create_task(second.value.approval.outcome())
            await _decide(backend_http, stack, "deny")
            with pytest.raises(ApprovalDeclined):
                await asyncio.wait_for(polling, timeout=30)
            assert Decimal(stack.balance()) == before - Decimal("750.00")

            # A token approved for one payee, presented for another: 403, nothing moves.
            other = stack.bank().list_payees("alice")["payees"][1]["payee_id"]
            bills = Movement("payment", checking, payee, "520.00", "USD", "e2e-bills", "Pay 520.00 USD")
            pending = await bank.tokens.request_approval(bills)
            polling = asyncio.create_task(bank.tokens.await_approval(pending))
            await _decide(backend_http, stack, "approve")
            access = await asyncio.wait_for(polling, timeout=30)
            swapped = bills.arguments() | {"payee_id": other}
            # Proved with the call's own key: the one thing wrong with this request is the payee.
            refused = await mcp_post(
                stack.mcp_urls[1],
                access.token,
                "make_payment",
                swapped,
                dpop=bank.dpop,
                resource=stack.resource,
            )
            assert refused.status_code == 403
            assert 'error="insufficient_authorization_details"' in refused.headers["www-authenticate"]
            assert Decimal(stack.balance()) == before - Decimal("750.00")
        finally:
            assert await bank.end()
