"""Money moves only after the user said yes to one exact pending operation, read back to them first."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["Answer", "PendingOperation", "classify_answer"]

Answer = Literal["yes", "no", "unclear"]

_NEGATIVE = re.compile(
    r"\b(no|nope|nah|not|don'?t|do not|cancel|stop|wait|hold on|never|wrong|incorrect)\b", re.IGNORECASE
)
_AFFIRMATIVE = re.compile(
    r"\b(yes|yeah|yep|yup|sure|ok|okay|confirm|confirmed|correct|right|go ahead|do it|please do|"
    r"absolutely|affirmative|proceed|send it|pay it)\b",
    re.IGNORECASE,
)


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
