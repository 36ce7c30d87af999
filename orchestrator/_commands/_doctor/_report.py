"""One check's outcome and how the report prints it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Check", "Outcome", "fail", "ok", "report", "skip"]

Outcome = Literal["ok", "FAIL", "skip"]


@dataclass(frozen=True)
class Check:
    """What was checked, how it went, and a sentence an operator can act on."""

    name: str
    outcome: Outcome
    detail: str

    def line(self) -> str:
        return f"{self.outcome:<5}{self.name}: {self.detail}"


def ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def fail(name: str, detail: str) -> Check:
    return Check(name, "FAIL", detail)


def skip(name: str, detail: str) -> Check:
    return Check(name, "skip", detail)


def report(checks: Sequence[Check]) -> tuple[str, int]:
    """The lines to print and the exit status: 1 when a check failed."""
    status = 1 if any(check.outcome == "FAIL" for check in checks) else 0
    return "\n".join(check.line() for check in checks), status
