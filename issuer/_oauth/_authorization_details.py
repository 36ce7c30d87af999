"""RFC 9396 `authorization_details` of a `transact` token: exactly one payment or transfer, strictly checked.

The parameter is bounded before it is parsed, duplicate JSON members are refused (two parsers must never
read two different payments out of one text), and every member is a string checked against the same rules
the MCP server's tool schemas apply, so an approved payment is one the bank can run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from issuer._oauth._errors import InvalidAuthorizationDetails

MAX_PARAMETER_CHARS = 2048
TYPES = ("payment", "transfer")
_MEMBERS: dict[str, tuple[str, ...]] = {
    "payment": ("type", "from_account_id", "payee_id", "amount", "currency", "idempotency_key"),
    "transfer": ("type", "from_account_id", "to_account_id", "amount", "currency", "idempotency_key"),
}
# The MCP server's tool schemas: ids at most 64 characters, idempotency_key at most 128.
_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_KEY = re.compile(r"[\x21-\x7e]{1,128}")
_AMOUNT = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,2})?")
_CURRENCY = re.compile(r"[A-Z]{3}")


def _refuse(description: str, reason: str) -> InvalidAuthorizationDetails:
    return InvalidAuthorizationDetails(description, reason=f"details_{reason}")


def amount_cents(text: str) -> int | None:
    """Cents of an amount string matching the amount rule exactly, else None."""
    if _AMOUNT.fullmatch(text) is None:
        return None
    units, _, frac = text.partition(".")
    return int(units) * 100 + int(frac.ljust(2, "0") or "0")


def format_cents(cents: int) -> str:
    units, frac = divmod(cents, 100)
    return f"{units}.{frac:02d}"


@dataclass(frozen=True)
class AuthorizationDetail:
    """One money movement a `transact` token authorizes."""

    type: Literal["payment", "transfer"]
    from_account_id: str
    target_id: str
    """The payee (payment) or the account credited (transfer)."""
    cents: int
    currency: str
    idempotency_key: str

    def claim(self) -> list[dict[str, str]]:
        """The `authorization_details` claim: the RFC 9396 array with the amount in canonical form."""
        target = "payee_id" if self.type == "payment" else "to_account_id"
        return [
            {
                "type": self.type,
                "from_account_id": self.from_account_id,
                target: self.target_id,
                "amount": format_cents(self.cents),
                "currency": self.currency,
                "idempotency_key": self.idempotency_key,
            }
        ]

    @classmethod
    def from_claim(cls, claim: Any) -> AuthorizationDetail:
        """The detail of a stored claim (the array `claim()` made); InvalidAuthorizationDetails otherwise."""
        return _detail(claim)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise _refuse("authorization_details repeats a member", "duplicate_member")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise _refuse("authorization_details is not valid JSON", "not_json")


def _string(entry: dict[str, Any], name: str, pattern: re.Pattern[str], rule: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str):
        raise _refuse(f"{name} must be a string", f"{name}_not_string")
    if pattern.fullmatch(value) is None:
        raise _refuse(f"{name} must be {rule}", f"bad_{name}")
    return value


def _detail(data: Any) -> AuthorizationDetail:
    if not isinstance(data, list):
        raise _refuse("authorization_details must be a JSON array", "not_array")
    if len(data) != 1:
        raise _refuse("authorization_details must hold exactly one entry", "not_one_entry")
    entry = data[0]
    if not isinstance(entry, dict):
        raise _refuse("the authorization_details entry must be an object", "entry_not_object")
    kind = entry.get("type")
    if kind not in TYPES:
        raise _refuse(f"type must be one of {', '.join(TYPES)}", "unknown_type")
    expected = _MEMBERS[kind]
    unknown = entry.keys() - set(expected)
    if unknown:
        raise _refuse(
            f"unknown members for type {kind}: {', '.join(sorted(unknown))[:200]}", "unknown_member"
        )
    missing = [name for name in expected if name not in entry]
    if missing:
        raise _refuse(f"missing members for type {kind}: {', '.join(missing)}", "missing_member")
    ids = "at most 64 letters, digits or ._:-"
    source = _string(entry, "from_account_id", _ID, ids)
    target_name = "payee_id" if kind == "payment" else "to_account_id"
    target = _string(entry, target_name, _ID, ids)
    amount = _string(entry, "amount", _AMOUNT, "a decimal string like 12.50 (at most 9 digits, 2 decimals)")
    currency = _string(entry, "currency", _CURRENCY, "an ISO 4217 code such as USD")
    key = _string(entry, "idempotency_key", _KEY, "1 to 128 printable ASCII characters")
    cents = amount_cents(amount)
    if not cents:
        raise _refuse("amount must be greater than zero", "zero_amount")
    if kind == "transfer" and source == target:
        raise _refuse("a transfer needs two different accounts", "same_account")
    return AuthorizationDetail(kind, source, target, cents, currency, key)


def parse_authorization_details(text: str) -> AuthorizationDetail:
    """The one movement of an `authorization_details` form parameter; InvalidAuthorizationDetails else."""
    if len(text) > MAX_PARAMETER_CHARS:
        raise _refuse(f"authorization_details is longer than {MAX_PARAMETER_CHARS} characters", "too_long")
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise _refuse("authorization_details is not valid JSON", "not_json") from None
    return _detail(data)
