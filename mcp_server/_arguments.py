"""The tools' argument types: every string capped in the input schema, with its enum or pattern.

`ArgumentRefusal` is the one sentence (and audit reason) a refused argument is answered with.

FastMCP validates a call's arguments against these types (pydantic-core: lengths first, a regex engine
without backtracking) before a tool body runs, so the caps hold before any other check of an argument, on
every protocol path; `ArgumentRefusal.of` turns the validation error into an audit reason and a sentence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final

from pydantic import Field
from pydantic import ValidationError as PydanticValidationError

from mcp_server._bank._models import (
    ACCOUNT_TYPES,
    CHANNELS,
    ID_MAX,
    IDEMPOTENCY_KEY_MAX,
    MEMO_MAX,
    AccountType,
    Channel,
)
from mcp_server._bank._money import AMOUNT_MAX, AMOUNT_PATTERN
from mcp_server._bank._service import MAX_TRANSACTIONS


def _enum_cap(values: tuple[str, ...]) -> dict[str, Any]:
    # An enum caps a string by itself; the explicit maxLength says so to clients, like every other string.
    return {"maxLength": max(len(v) for v in values)}


Id = Annotated[str, Field(max_length=ID_MAX)]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=IDEMPOTENCY_KEY_MAX)]
Memo = Annotated[str, Field(max_length=MEMO_MAX)]
Amount = Annotated[str, Field(max_length=AMOUNT_MAX, pattern=AMOUNT_PATTERN)]
Limit = Annotated[int, Field(ge=1, le=MAX_TRANSACTIONS)]
AccountTypeArg = Annotated[AccountType, Field(json_schema_extra=_enum_cap(ACCOUNT_TYPES))]
ChannelArg = Annotated[Channel, Field(json_schema_extra=_enum_cap(CHANNELS))]

_AMOUNT_SENTENCE = "The amount must be a number with at most two decimal places, like 12.50."
# What to say when an argument is short enough but not an allowed value (enum, pattern, range).
_NOT_ALLOWED: Final[Mapping[str, str]] = {
    "account_type": "The account type must be checking, savings or credit.",
    "channel": "The channel must be sms, email or push.",
    "amount": _AMOUNT_SENTENCE,
    "low_balance_threshold": _AMOUNT_SENTENCE,
    "limit": f"The limit must be between 1 and {MAX_TRANSACTIONS}.",
}
_UNEXPECTED = frozenset({"unexpected_keyword_argument", "extra_forbidden", "unexpected_positional_argument"})
_NAME_MAX = 64


@dataclass(frozen=True, slots=True)
class ArgumentRefusal:
    """Why a call's arguments were refused: a stable audit reason and one sentence for the caller."""

    reason: str
    sentence: str

    @classmethod
    def of(cls, error: PydanticValidationError) -> ArgumentRefusal:
        """The refusal for the first failed argument; never echoes a value the caller sent."""
        first = error.errors(include_url=False, include_input=False)[0]
        kind = first["type"]
        loc = first["loc"]
        name = loc[0] if loc and isinstance(loc[0], str) else ""
        # The name of an unexpected argument is client text: spoken only when it is short and plain.
        plain = name.isascii() and name.isidentifier() and len(name) <= _NAME_MAX
        what = "The " + name.replace("_", " ") if plain else "An argument"
        if kind in _UNEXPECTED:
            taken = name if plain else "that argument"
            return cls("unexpected_argument", f"This tool does not take {taken}.")
        if kind == "missing":
            return cls("argument_missing", f"{what} is required.")
        if kind == "string_too_long":
            limit = first.get("ctx", {}).get("max_length")
            return cls("argument_too_long", f"{what} must be at most {limit} characters.")
        if kind == "string_too_short":
            return cls("argument_missing", f"{what} must not be empty.")
        if kind.endswith("_type") or kind.endswith("_parsing"):
            return cls("argument_type", f"{what} has the wrong type.")
        return cls("argument_not_allowed", _NOT_ALLOWED.get(name, f"{what} is not an allowed value."))
