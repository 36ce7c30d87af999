"""A `transact` token moves exactly the money it names: a call's arguments against its authorization details.

The issuer binds each `transact` token to one movement (RFC 9396 `authorization_details`,
docs/architecture.md: "Payments bound to what the caller approved"). `make_payment` and
`transfer_between_accounts` run only when the call's accounts, payee, amount (compared as a decimal, after the
amount rule: `25`, `25.0` and `25.00` are equal, `25.001` is not an amount) and idempotency key equal the
token's, and the source account's currency is the token's currency. Anything else is a `BindingMismatch`, a
denial the middleware raises after the scope check and before the token's `jti` is spent (so the token stays
usable for the movement it names); the tool checks once more with the arguments as FastMCP parsed them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp_server._auth._denials import Denial
from mcp_server._bank._money import AMOUNT_PATTERN
from mcp_server._errors import McpServerError

INSUFFICIENT_AUTHORIZATION_DETAILS = "insufficient_authorization_details"
# tool -> (authorization details type, the member naming where the money goes)
MOVEMENT_TOOLS: dict[str, tuple[str, str]] = {
    "make_payment": ("payment", "payee_id"),
    "transfer_between_accounts": ("transfer", "to_account_id"),
}
_TARGETS = dict(MOVEMENT_TOOLS.values())
# The bank's one spelling of an amount (the tools' input schemas carry it too).
_AMOUNT = re.compile(AMOUNT_PATTERN)
_CURRENCY = re.compile(r"[A-Z]{3}")


class BindingMismatch(Denial):
    """403 `insufficient_authorization_details`: the call is not the movement the token authorizes.

    The challenge is in the client's scheme (`Bearer` or `DPoP`); `reason` goes to the audit log only.
    """

    code = INSUFFICIENT_AUTHORIZATION_DETAILS
    status = 403
    error = INSUFFICIENT_AUTHORIZATION_DETAILS
    challenge = True


class CurrencyUnavailable(McpServerError):
    """The bank cannot say which currency an account holds right now; the call is refused (fail closed)."""

    code = "bank_unavailable"


def amount_cents(value: Any) -> int | None:
    """Cents of a string that matches the amount rule exactly, else None."""
    if not isinstance(value, str) or _AMOUNT.fullmatch(value) is None:
        return None
    units, _, frac = value.partition(".")
    return int(units) * 100 + int(frac.ljust(2, "0"))


def _text(entry: Mapping[str, Any], name: str) -> str | None:
    value = entry.get(name)
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
class Movement:
    """The one movement a `transact` token authorizes."""

    type: str
    from_account_id: str
    target_id: str
    cents: int
    currency: str
    idempotency_key: str

    @classmethod
    def from_claim(cls, claim: Any) -> Movement | None:
        """The movement of an `authorization_details` claim, or None when it is absent or not one movement."""
        if not isinstance(claim, list) or len(claim) != 1 or not isinstance(claim[0], Mapping):
            return None
        entry = claim[0]
        kind = entry.get("type")
        target = _TARGETS.get(kind) if isinstance(kind, str) else None
        if target is None:
            return None
        values = [_text(entry, name) for name in ("from_account_id", target, "currency", "idempotency_key")]
        cents = amount_cents(entry.get("amount"))
        source, target_id, currency, key = values
        if source is None or target_id is None or currency is None or key is None or not cents:
            return None
        if _CURRENCY.fullmatch(currency) is None:
            return None
        return cls(str(kind), source, target_id, cents, currency, key)


def check_call(movement: Movement | None, tool: str, arguments: Any) -> Movement:
    """The movement when `arguments` of `tool` are exactly it; BindingMismatch otherwise."""
    kind, target = MOVEMENT_TOOLS[tool]
    if movement is None:
        raise BindingMismatch("details_missing")
    if movement.type != kind:
        raise BindingMismatch("details_other_type")
    if not isinstance(arguments, Mapping):
        raise BindingMismatch("details_no_arguments")
    # The amount rule first: an amount that is not one is never rounded into one.
    cents = amount_cents(arguments.get("amount"))
    if cents is None:
        raise BindingMismatch("details_amount_rule")
    if cents != movement.cents:
        raise BindingMismatch("details_amount")
    for name, expected in (
        ("from_account_id", movement.from_account_id),
        (target, movement.target_id),
        ("idempotency_key", movement.idempotency_key),
    ):
        if arguments.get(name) != expected:
            raise BindingMismatch(f"details_{name}")
    return movement


def check_currency(movement: Movement, currency: str | None) -> None:
    """The source account's currency (None: no such account of the caller's) against the token's."""
    if currency is not None and currency != movement.currency:
        raise BindingMismatch("details_currency")
