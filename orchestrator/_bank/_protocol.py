"""The seam between the agent and the bank: the `Bank` protocol and its errors.

Error tree::

    BankError                 message is safe to speak to the user
    ├── ToolRefused           "refused": the tool said no (insufficient funds, not found...)
    ├── ServiceUnavailable    "unavailable": issuer or MCP server unreachable for now
    └── AuthorizationLost     "authorization_lost": the refresh family is gone; stop calling tools
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from orchestrator._errors import OrchestratorError

__all__ = [
    "AuthorizationLost",
    "Bank",
    "BankError",
    "ServiceUnavailable",
    "ToolRefused",
]


class BankError(OrchestratorError):
    """A bank call failed; `str(err)` is one plain sentence safe to speak to the user."""

    code: str = "bank_error"


class ToolRefused(BankError):
    """The MCP tool refused the call (insufficient funds, account not found...)."""

    code = "refused"


class ServiceUnavailable(BankError):
    """The issuer or the MCP server is unreachable for now; a later call may succeed."""

    code = "unavailable"


class AuthorizationLost(BankError):
    """The session's authorization is gone for good; no further tool may be called."""

    code = "authorization_lost"


@runtime_checkable
class Bank(Protocol):
    """One async method per MCP banking tool, same parameters, returning the tool's JSON object."""

    async def get_balance(self, account_type: str | None = None) -> dict[str, Any]: ...

    async def list_transactions(self, account_id: str | None = None, limit: int = 10) -> dict[str, Any]: ...

    async def list_loans(self) -> dict[str, Any]: ...

    async def list_payees(self) -> dict[str, Any]: ...

    async def make_payment(
        self,
        from_account_id: str,
        payee_id: str,
        amount: str,
        idempotency_key: str,
        memo: str | None = None,
    ) -> dict[str, Any]: ...

    async def transfer_between_accounts(
        self,
        from_account_id: str,
        to_account_id: str,
        amount: str,
        idempotency_key: str,
    ) -> dict[str, Any]: ...

    async def update_notification_settings(
        self,
        low_balance_alert: bool | None = None,
        low_balance_threshold: str | None = None,
        large_payment_alert: bool | None = None,
        channel: str | None = None,
    ) -> dict[str, Any]: ...
