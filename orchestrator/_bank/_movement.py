"""The one money movement a user confirmed: what its single-use `transact` token is bound to (RFC 9396)."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import Literal

__all__ = ["MAX_BINDING_MESSAGE", "Movement", "binding_message"]

MAX_BINDING_MESSAGE = 80  # what the user's banking app shows; the issuer refuses longer


def binding_message(text: str) -> str:
    """`text` as the issuer accepts it: no control or format characters, at most 80 characters."""
    spaced = " ".join(text.split())  # line breaks and tabs become single spaces first
    kept = "".join(char for char in spaced if unicodedata.category(char) not in ("Cc", "Cf"))
    if len(kept) <= MAX_BINDING_MESSAGE:
        return kept
    return kept[: MAX_BINDING_MESSAGE - 1].rstrip() + "…"


@dataclass(frozen=True)
class Movement:
    """A payment to a payee or a transfer between the user's own accounts, exactly as confirmed."""

    kind: Literal["payment", "transfer"]
    from_account_id: str
    to_id: str
    """The payee (payment) or the account credited (transfer)."""
    amount: str
    currency: str
    idempotency_key: str
    label: str = ""
    """What the user's app shows when it asks them to approve (the binding message)."""

    @property
    def tool(self) -> Literal["make_payment", "transfer_between_accounts"]:
        return "make_payment" if self.kind == "payment" else "transfer_between_accounts"

    def arguments(self) -> dict[str, str]:
        """The MCP tool's arguments that the token binds (a payment's memo is not one of them)."""
        target = "payee_id" if self.kind == "payment" else "to_account_id"
        return {
            "from_account_id": self.from_account_id,
            target: self.to_id,
            "amount": self.amount,
            "idempotency_key": self.idempotency_key,
        }

    def authorization_details(self) -> str:
        """The `authorization_details` form parameter: a JSON array with this one movement."""
        entry = {"type": self.kind, **self.arguments(), "currency": self.currency}
        return json.dumps([entry], separators=(",", ":"))

    def binding_message(self) -> str:
        return binding_message(self.label or f"{self.kind.capitalize()} {self.amount} {self.currency}")
