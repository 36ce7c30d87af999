"""The seam between the agent and the bank: the `Bank` protocol and its errors.

Error tree::

    BankError                 message is safe to speak to the user
    ├── ToolRefused           "refused": the tool said no (insufficient funds, not found...)
    │   ├── NotAuthorized     "not_authorized": the MCP server refused a movement its token does not name
    │   ├── ApprovalDeclined  "approval_declined": the user declined the movement in their banking app
    │   └── ApprovalExpired   "approval_expired": nobody decided before the approval request expired
    ├── ApprovalRequired      "approval_required": the movement waits for the user's approval (`.approval`)
    ├── ServiceUnavailable    "unavailable": issuer or MCP server unreachable for now
    └── AuthorizationLost     "authorization_lost": the refresh family is gone; stop calling tools
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from orchestrator._bank._movement import Movement
from orchestrator._errors import OrchestratorError

__all__ = [
    "ApprovalDeclined",
    "ApprovalExpired",
    "ApprovalRequired",
    "AuthorizationLost",
    "Bank",
    "BankError",
    "NotAuthorized",
    "PendingApproval",
    "ServiceUnavailable",
    "ToolRefused",
]


class BankError(OrchestratorError):
    """A bank call failed; `str(err)` is one plain sentence safe to speak to the user."""

    code: str = "bank_error"


class ToolRefused(BankError):
    """The MCP tool refused the call (insufficient funds, account not found...)."""

    code = "refused"


class NotAuthorized(ToolRefused):
    """The MCP server refused a movement that is not the one its token was bound to; nothing moved."""

    code = "not_authorized"

    def __init__(self, message: str = "That was not the payment you confirmed, so no money moved.") -> None:
        super().__init__(message)


class ApprovalDeclined(ToolRefused):
    """The user declined the movement in their banking app."""

    code = "approval_declined"

    def __init__(self, message: str = "You declined it in your banking app, so no money moved.") -> None:
        super().__init__(message)


class ApprovalExpired(ToolRefused):
    """The approval request expired (or was lost) before the user approved it."""

    code = "approval_expired"

    def __init__(self, message: str = "The approval request expired, so no money moved.") -> None:
        super().__init__(message)


class PendingApproval(Protocol):
    """A confirmed movement waiting for the user's approval on their own device."""

    movement: Movement

    async def outcome(self) -> dict[str, Any]:
        """Wait for the decision; the tool's result once approved and made, else a `BankError`."""
        ...


class ApprovalRequired(BankError):
    """The movement is above what the call may do without the user's approval in their banking app.

    The approval request is already with the user's app; `approval.outcome()` waits for it (and makes the
    movement once approved) without holding anything else up.
    """

    code = "approval_required"

    def __init__(self, approval: PendingApproval) -> None:
        super().__init__("This needs your approval in your banking app.")
        self.approval = approval


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
        *,
        confirmed: Movement,
    ) -> dict[str, Any]:
        """Pay under a token bound to `confirmed` (what the user confirmed); `ApprovalRequired` above the
        session's approval threshold."""
        ...

    async def transfer_between_accounts(
        self,
        from_account_id: str,
        to_account_id: str,
        amount: str,
        idempotency_key: str,
        *,
        confirmed: Movement,
    ) -> dict[str, Any]:
        """Transfer under a token bound to `confirmed`; `ApprovalRequired` above the threshold."""
        ...

    async def update_notification_settings(
        self,
        low_balance_alert: bool | None = None,
        low_balance_threshold: str | None = None,
        large_payment_alert: bool | None = None,
        channel: str | None = None,
    ) -> dict[str, Any]: ...
