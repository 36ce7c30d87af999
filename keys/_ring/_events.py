"""Key events: what changed between two rings that verifiers must hear at once, as a typed message.

The wire form on the `voicebank:key-events` channel is JSON `{"type": "revoked" | "rotated", "kid": "<kid>"}`;
`KeyEvent.encode` writes it and `KeyEvent.decode` reads it, so the issuer, the Redis key store and the MCP
server share one definition.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, get_args

from keys._ring._keyring import KeyRing, KeyState

KEY_EVENTS_CHANNEL = "voicebank:key-events"
MAX_KID = 256
EventType = Literal["revoked", "rotated"]
_TYPES: frozenset[str] = frozenset(get_args(EventType))


@dataclass(frozen=True, slots=True)
class KeyEvent:
    """`revoked`: drop this kid at once. `rotated`: this kid signs now; fetch the JWKS if it is unknown."""

    type: EventType
    kid: str

    def __post_init__(self) -> None:
        if self.type not in _TYPES or not isinstance(self.kid, str) or not 0 < len(self.kid) <= MAX_KID:
            raise ValueError("a key event is a known type and a kid of 1 to 256 characters")

    def encode(self) -> str:
        return json.dumps({"type": self.type, "kid": self.kid})

    @classmethod
    def decode(cls, data: bytes | str) -> KeyEvent | None:
        """The event in a channel message; None for anything else (a message is never trusted to be one)."""
        try:
            message: Any = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(message, dict):
            return None
        kind, kid = message.get("type"), message.get("kid")
        if kind not in _TYPES or not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID:
            return None
        return cls(kind, kid)


def key_events(old: KeyRing, new: KeyRing) -> list[KeyEvent]:
    """`revoked` for each newly revoked kid, then `rotated` with the new active kid of each algorithm."""
    before = {record.kid: record.state for record in old.records}
    events = [
        KeyEvent("revoked", record.kid)
        for record in new.records
        if record.state is KeyState.REVOKED and before.get(record.kid) is not KeyState.REVOKED
    ]
    for alg in new.algs:
        kid = new.signing_key(alg).kid
        if alg not in old.algs or old.signing_key(alg).kid != kid:
            events.append(KeyEvent("rotated", kid))
    return events
