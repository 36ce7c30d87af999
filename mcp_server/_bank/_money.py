"""Money as integer cents: parsing user amounts and formatting balances."""

from __future__ import annotations

import re

from mcp_server._bank._errors import InvalidAmount, OverLimit

# The only spelling of an amount: ASCII digits, at most two places; no sign, spaces or other digits. The
# tools' input schemas carry this exact pattern; `fullmatch` keeps Python's `$` from accepting a final "\n".
AMOUNT_PATTERN = r"^[0-9]{1,9}(\.[0-9]{1,2})?$"
AMOUNT_MAX = len("999999999.99")
_AMOUNT = re.compile(AMOUNT_PATTERN)


def parse_cents(text: str) -> int:
    """Cents in a non-negative decimal string with at most two places, or InvalidAmount."""
    if not isinstance(text, str) or len(text) > AMOUNT_MAX or _AMOUNT.fullmatch(text) is None:
        raise InvalidAmount("The amount must be a number with at most two decimal places, like 12.50.")
    units, _, frac = text.partition(".")
    return int(units) * 100 + int(frac.ljust(2, "0"))


def parse_amount(text: str, *, limit_cents: int) -> int:
    """Cents of a payment amount: positive, two places at most, within the per-payment limit."""
    cents = parse_cents(text)
    if cents <= 0:
        raise InvalidAmount("The amount must be greater than zero.")
    if cents > limit_cents:
        raise OverLimit(f"The amount is above the per-payment limit of {format_cents(limit_cents)}.")
    return cents


def format_cents(cents: int) -> str:
    """A decimal string with two places ("-12.50")."""
    sign = "-" if cents < 0 else ""
    units, frac = divmod(abs(cents), 100)
    return f"{sign}{units}.{frac:02d}"
