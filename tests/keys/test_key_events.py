"""The key-event message: one typed value, one wire form for the issuer, the Redis key store and verifiers."""

from __future__ import annotations

import json

import pytest

from keys import KeyEvent


@pytest.mark.parametrize(
    ("message", "event"),
    [
        (b'{"type": "revoked", "kid": "abc"}', KeyEvent("revoked", "abc")),
        ('{"type": "revoked", "kid": "abc"}', KeyEvent("revoked", "abc")),
        (b'{"type": "rotated", "kid": "abc"}', KeyEvent("rotated", "abc")),
        (b'{"kid": "abc", "type": "rotated", "extra": 1}', KeyEvent("rotated", "abc")),
        (b'{"type": "retired", "kid": "abc"}', None),
        (b'{"type": "revoked"}', None),
        (b'{"type": "revoked", "kid": 7}', None),
        (b'{"type": "revoked", "kid": ""}', None),
        (json.dumps({"type": "revoked", "kid": "k" * 257}).encode(), None),
        (b"[1, 2]", None),
        (b"not json", None),
        (b"\xff\xfe", None),
    ],
)
def test_decode_reads_events_and_ignores_anything_else(message: bytes | str, event: KeyEvent | None) -> None:
    assert KeyEvent.decode(message) == event


def test_the_wire_form_is_the_documented_json() -> None:
    for event in (KeyEvent("revoked", "kid-1"), KeyEvent("rotated", "kid-2")):
        assert json.loads(event.encode()) == {"type": event.type, "kid": event.kid}
        assert KeyEvent.decode(event.encode()) == event
        assert KeyEvent.decode(event.encode().encode()) == event


@pytest.mark.parametrize(("kind", "kid"), [("retired", "k"), ("revoked", ""), ("rotated", "k" * 257)])
def test_an_event_cannot_be_built_wrong(kind: str, kid: str) -> None:
    with pytest.raises(ValueError, match="key event"):
        KeyEvent(kind, kid)  # type: ignore[arg-type]
