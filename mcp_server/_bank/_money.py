"""Money as integer cents: parsing user amounts and formatting balances."""

from __future__ import annotations

import re

from mcp_server._bank._errors import InvalidAmount, OverLimit

_AMOUNT = re.compile(r"(?P<units>[0-9]{1,12})(?:\.(?P<frac>[0-9]{1,2}))?")


def parse_cents(text: str) -> int:
    """Cents in a non-negative decimal string with at most two places, or InvalidAmount."""
    match = _AMOUNT.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise InvalidAmount("The amount must be a number with at most two decimal places, like 12.50.")
    frac = (match["frac"] or "").ljust(2, "0")
    return int(match["units"]) * 100 + int(frac or "0")


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
