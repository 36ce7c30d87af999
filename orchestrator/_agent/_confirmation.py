"""Money moves only after the user said yes to one exact pending operation, read back to them first."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from orchestrator._bank._movement import Movement

__all__ = ["Answer", "PendingOperation", "amount_cents", "classify_answer"]

Answer = Literal["yes", "no", "unclear"]

_NEGATIVE = re.compile(
    r"\b(no|nope|nah|not|don'?t|do not|cancel|stop|wait|hold on|never|wrong|incorrect)\b", re.IGNORECASE
)
_AFFIRMATIVE = re.compile(
    r"\b(yes|yeah|yep|yup|sure|ok|okay|confirm|confirmed|correct|right|go ahead|do it|please do|"
    r"absolutely|affirmative|proceed|send it|pay it)\b",
    re.IGNORECASE,
)


# The MCP server's amount rule: the only amounts; [0-9], not \d, which also matches other scripts' digits.
_AMOUNT = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,2})?")


def amount_cents(text: str) -> int | None:
    """Cents of an amount that matches the amount rule exactly, else None."""
    if _AMOUNT.fullmatch(text) is None:
        return None
    units, _, frac = text.partition(".")
    return int(units) * 100 + int(frac.ljust(2, "0"))


def classify_answer(text: str) -> Answer:
    """Whether the user's words confirm, refuse, or neither; any hint of "no" wins over "yes"."""
    words = text.replace("\u2019", "'")
    if _NEGATIVE.search(words):
        return "no"
    if _AFFIRMATIVE.search(words):
        return "yes"
    return "unclear"


@dataclass(frozen=True)
class PendingOperation:
    """A payment or transfer read back to the user and waiting for their yes.

    `idempotency_key` is made once here, so every attempt at this operation (a retry after the bank was
    unreachable included) carries the same key and the bank pays at most once.
    """

    confirmation_id: str
    tool: Literal["make_payment", "transfer_between_accounts"]
    arguments: dict[str, str | None]
    idempotency_key: str
    summary: str
    asked_after: str | None
    """Id of the last user message before the read-back: the confirming answer must come after it."""
    currency: str
    phrase: str
    """How the agent names it afterwards ("the payment of 25.00 USD to Jane S.")."""
    label: str
    """What the user's banking app shows if it needs their approval (at most 80 characters)."""

    def movement(self) -> Movement:
        """Exactly what the user confirmed: what the payment's token is bound to."""
        arguments = self.arguments
        target = arguments["payee_id"] if self.tool == "make_payment" else arguments["to_account_id"]
        return Movement(
            kind="payment" if self.tool == "make_payment" else "transfer",
            from_account_id=str(arguments["from_account_id"]),
            to_id=str(target),
            amount=str(arguments["amount"]),
            currency=self.currency,
            idempotency_key=self.idempotency_key,
            label=self.label,
        )
