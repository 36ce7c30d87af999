"""Banking errors: each carries a stable code and a sentence safe to speak to the user.

BankError (an `McpServerError`)
 ├── InvalidArgument      "invalid_argument"
 ├── InvalidAmount        "invalid_amount"
 ├── OverLimit            "over_limit"
 ├── AccountNotFound      "account_not_found"
 ├── PayeeNotFound        "payee_not_found"
 ├── AccountClosed        "account_closed"
 ├── SameAccount          "same_account"
 ├── InsufficientFunds    "insufficient_funds"
 └── IdempotencyConflict  "idempotency_conflict"
"""

from __future__ import annotations

from mcp_server._errors import McpServerError


class BankError(McpServerError):
    """A refused banking request; `str(err)` is one plain sentence for the user."""

    code = "bank_error"


class InvalidArgument(BankError):
    """An argument is malformed or out of range."""

    code = "invalid_argument"


class InvalidAmount(BankError):
    """An amount is not a positive decimal with at most two places."""

    code = "invalid_amount"


class OverLimit(BankError):
    """An amount is above the per-payment limit."""

    code = "over_limit"


class AccountNotFound(BankError):
    """No account with that id belongs to the caller."""

    code = "account_not_found"

    def __init__(self) -> None:
        super().__init__("Account not found.")


class PayeeNotFound(BankError):
    """No payee with that id belongs to the caller."""

    code = "payee_not_found"

    def __init__(self) -> None:
        super().__init__("Payee not found.")


class AccountClosed(BankError):
    """The account is closed."""

    code = "account_closed"


class SameAccount(BankError):
    """A transfer names the same account twice."""

    code = "same_account"

    def __init__(self) -> None:
        super().__init__("You cannot transfer money to the same account.")


class InsufficientFunds(BankError):
    """The debit would take the balance below what the account allows."""

    code = "insufficient_funds"


class IdempotencyConflict(BankError):
    """The idempotency key was already used for a different request."""

    code = "idempotency_conflict"

    def __init__(self) -> None:
        super().__init__("This request id was already used for a different request.")
