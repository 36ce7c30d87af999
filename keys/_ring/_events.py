"""Key events: what changed between two rings, as the JSON messages of the `voicebank:key-events` channel."""

from __future__ import annotations

from keys._ring._keyring import KeyRing, KeyState

KEY_EVENTS_CHANNEL = "voicebank:key-events"


def key_events(old: KeyRing, new: KeyRing) -> list[dict[str, str]]:
    """`revoked` for each newly revoked kid, then `rotated` with the new active kid of each algorithm."""
    before = {record.kid: record.state for record in old.records}
    events = [
        {"type": "revoked", "kid": record.kid}
        for record in new.records
        if record.state is KeyState.REVOKED and before.get(record.kid) is not KeyState.REVOKED
    ]
    for alg in new.algs:
        kid = new.signing_key(alg).kid
        if alg not in old.algs or old.signing_key(alg).kid != kid:
            events.append({"type": "rotated", "kid": kid})
    return events
