"""Short per-call references that stand in for the bank's ids in everything the LLM sees.

Bank ids are opaque and may hold long digit runs that PII masking would cut, so the LLM never sees them:
it sees `account-1`, `payee-2`... and passes those back; the agent resolves them to the real ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator._errors import OrchestratorError

__all__ = ["ID_FIELDS", "RefTable", "UnknownRef"]

ID_FIELDS: Mapping[str, str] = {
    "account_id": "account",
    "from_account_id": "account",
    "to_account_id": "account",
    "payee_id": "payee",
    "loan_id": "loan",
    "transaction_id": "transaction",
    "payment_id": "payment",
    "transfer_id": "transfer",
}
"""Result fields that hold a bank id, and the kind of reference each becomes."""


class UnknownRef(OrchestratorError, LookupError):
    """The LLM passed a reference this call never handed out."""

    code = "unknown_ref"


class RefTable:
    """Two-way map between bank ids and the references handed to the LLM during one call."""

    def __init__(self) -> None:
        self._by_id: dict[tuple[str, str], str] = {}
        self._by_ref: dict[str, tuple[str, str]] = {}
        self._counts: dict[str, int] = {}

    def ref(self, kind: str, bank_id: str) -> str:
        """The reference for a bank id, created on first sight and stable for the rest of the call."""
        existing = self._by_id.get((kind, bank_id))
        if existing is not None:
            return existing
        count = self._counts.get(kind, 0) + 1
        self._counts[kind] = count
        ref = f"{kind}-{count}"
        self._by_id[(kind, bank_id)] = ref
        self._by_ref[ref] = (kind, bank_id)
        return ref

    def resolve(self, kind: str, ref: str) -> str:
        """The bank id behind a reference of the given kind; `UnknownRef` otherwise."""
        entry = self._by_ref.get(ref.strip().lower())
        if entry is None or entry[0] != kind:
            raise UnknownRef(ref)
        return entry[1]

    def replace_ids(self, data: Any) -> Any:
        """A copy of a tool result with every bank id field replaced by its reference."""
        if isinstance(data, Mapping):
            out: dict[str, Any] = {}
            for key, value in data.items():
                kind = ID_FIELDS.get(key)
                if kind is not None and isinstance(value, str):
                    out[key] = self.ref(kind, value)
                else:
                    out[key] = self.replace_ids(value)
            return out
        if isinstance(data, list | tuple):
            return [self.replace_ids(item) for item in data]
        return data
