"""Test doubles for the agent tests: a scripted LLM (allowed to be fake) and a small in-memory `Bank`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from orchestrator import (
    ApprovalRequired,
    AuthorizationLost,
    BankError,
    Movement,
    ServiceUnavailable,
    ToolRefused,
)
from orchestrator._commands._demo._scripted_llm import ScriptedLLM, call

__all__ = ["Account", "MemoryBank", "ScriptedLLM", "call"]

_JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"


@dataclass
class Account:
    account_id: str
    type: str
    account_number: str
    balance: Decimal


class HeldApproval:
    """A movement waiting for approval that nobody decides: `outcome()` waits until it is cancelled."""

    def __init__(self, movement: Movement) -> None:
        self.movement = movement
        self.cancelled = False

    async def outcome(self) -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        raise AssertionError("unreachable: nobody decides")


@dataclass
class MemoryBank:
    """A small in-memory bank with one customer, following the MCP tools' contract."""

    accounts: dict[str, Account] = field(
        default_factory=lambda: {
            "acc-000111222333": Account(
                "acc-000111222333", "checking", "4000123412341234", Decimal("120.00")
            ),
            "acc-000444555666": Account(
                "acc-000444555666", "savings", "4000555566667777", Decimal("5000.00")
            ),
        }
    )
    payees: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            "pay-77001234567": {
                "payee_id": "pay-77001234567",
                "name": "Jane Smith",
                "account_number": "9876543210",
            },
            "pay-77009876543": {
                "payee_id": "pay-77009876543",
                "name": "Robert Brown",
                "account_number": "55554444",
            },
        }
    )
    calls: list[str] = field(default_factory=list)
    confirmed: list[Movement] = field(default_factory=list)
    """The movement each payment or transfer was bound to."""
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_with: BankError | None = None
    """When set, every call raises it (after being counted)."""
    approval_above: Decimal | None = None
    """Movements above this wait for an approval nobody gives (`held`)."""
    held: list[HeldApproval] = field(default_factory=list)

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if self.fail_with is not None:
            raise self.fail_with

    def _account(self, account_id: str) -> Account:
        account = self.accounts.get(account_id)
        if account is None:
            raise ToolRefused("Account not found.")
        return account

    async def get_balance(self, account_type: str | None = None) -> dict[str, Any]:
        self._enter("get_balance")
        return {
            "accounts": [
                {
                    "account_id": a.account_id,
                    "type": a.type,
                    "account_number": a.account_number,
                    "balance": f"{a.balance:.2f}",
                    "currency": "USD",
                    "status": "open",
                }
                for a in self.accounts.values()
                if account_type is None or a.type == account_type
            ]
        }

    async def list_transactions(self, account_id: str | None = None, limit: int = 10) -> dict[str, Any]:
        self._enter("list_transactions")
        return {
            "transactions": [
                {
                    "transaction_id": "txn-20261124000001",
                    "account_id": "acc-000111222333",
                    "posted_at": "2026-11-24T10:00:00Z",
                    "amount": "-42.10",
                    "currency": "USD",
                    "description": "Card 4111 1111 1111 1111 refund to Jane Smith ref " + _JWT,
                    "counterparty": "Jane Smith",
                }
            ][:limit]
        }

    async def list_loans(self) -> dict[str, Any]:
        self._enter("list_loans")
        return {"loans": []}

    async def list_payees(self) -> dict[str, Any]:
        self._enter("list_payees")
        return {"payees": list(self.payees.values())}

    async def make_payment(
        self,
        from_account_id: str,
        payee_id: str,
        amount: str,
        idempotency_key: str,
        memo: str | None = None,
        *,
        confirmed: Movement,
    ) -> dict[str, Any]:
        self._enter("make_payment")
        self.confirmed.append(confirmed)
        if self.approval_above is not None and Decimal(amount) > self.approval_above:
            self.held.append(HeldApproval(confirmed))
            raise ApprovalRequired(self.held[-1])
        if idempotency_key in self.payments:
            return self.payments[idempotency_key]
        account = self._account(from_account_id)
        if payee_id not in self.payees:
            raise ToolRefused("Payee not found.")
        value = Decimal(amount)
        if value > account.balance:
            raise ToolRefused(f"Insufficient funds in account ending {account.account_number[-4:]}.")
        account.balance -= value
        result = {
            "payment_id": f"pmt-{len(self.payments) + 1:012d}",
            "status": "completed",
            "from_account_id": from_account_id,
            "payee_id": payee_id,
            "amount": f"{value:.2f}",
            "currency": "USD",
            "balance_after": f"{account.balance:.2f}",
        }
        self.payments[idempotency_key] = result
        return result

    async def transfer_between_accounts(
        self,
        from_account_id: str,
        to_account_id: str,
        amount: str,
        idempotency_key: str,
        *,
        confirmed: Movement,
    ) -> dict[str, Any]:
        self._enter("transfer_between_accounts")
        self.confirmed.append(confirmed)
        if idempotency_key in self.payments:
            return self.payments[idempotency_key]
        source, target = self._account(from_account_id), self._account(to_account_id)
        value = Decimal(amount)
        if value > source.balance:
            raise ToolRefused(f"Insufficient funds in account ending {source.account_number[-4:]}.")
        source.balance -= value
        target.balance += value
        result = {
            "transfer_id": f"trf-{len(self.payments) + 1:012d}",
            "status": "completed",
            "from_account_id": from_account_id,
            "to_account_id": to_account_id,
            "amount": f"{value:.2f}",
            "currency": "USD",
            "balance_after": f"{source.balance:.2f}",
        }
        self.payments[idempotency_key] = result
        return result

    async def update_notification_settings(
        self,
        low_balance_alert: bool | None = None,
        low_balance_threshold: str | None = None,
        large_payment_alert: bool | None = None,
        channel: str | None = None,
    ) -> dict[str, Any]:
        self._enter("update_notification_settings")
        return {
            "settings": {
                "low_balance_alert": bool(low_balance_alert),
                "low_balance_threshold": low_balance_threshold or "0.00",
                "large_payment_alert": bool(large_payment_alert),
                "channel": channel or "sms",
            }
        }


__all__ = ["AuthorizationLost", "MemoryBank", "ScriptedLLM", "ServiceUnavailable", "call"]
