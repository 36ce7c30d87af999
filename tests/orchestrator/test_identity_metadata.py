"""Participant metadata: a caller is identified only by a well-formed object; anything else is refused."""

from __future__ import annotations

import json

import pytest

from orchestrator import CallerIdentity, IdentityRefused, parse_identity

GRANT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


def metadata(**fields: object) -> str:
    base: dict[str, object] = {"user_id": "alice", "session_id": "room-1", "session_grant": GRANT}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


def test_well_formed_metadata_identifies_the_caller() -> None:
    identity = parse_identity(metadata(extra="ignored"), room_name="room-1")
    assert identity == CallerIdentity("alice", "room-1", GRANT)
    assert GRANT not in repr(identity)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (None, "missing"),
        ("", "missing"),
        ("not json", "not_json"),
        ("{", "not_json"),
        ("[1, 2]", "not_object"),
        ('"a string"', "not_object"),
        (metadata(user_id=...), "missing_field"),
        (metadata(session_id=None), "missing_field"),
        (metadata(session_grant=...), "missing_field"),
        (metadata(user_id=42), "invalid_field"),
        (metadata(user_id=""), "invalid_field"),
        (metadata(user_id=" alice"), "invalid_field"),
        (metadata(user_id="al\nice"), "invalid_field"),
        (metadata(user_id="a" * 257), "invalid_field"),
        (metadata(session_id=["room-1"]), "invalid_field"),
        (metadata(session_grant=""), "invalid_field"),
        (metadata(session_grant={"jwt": GRANT}), "invalid_field"),
        (metadata(session_grant="a.b"), "invalid_grant"),
        (metadata(session_grant="a.b.c.d"), "invalid_grant"),
        (metadata(session_grant="a..c"), "invalid_grant"),
        (metadata(session_grant="a+b.c/d.e="), "invalid_grant"),
        (metadata(session_grant=f" {GRANT}"), "invalid_grant"),
        (metadata(session_grant="a." + "b" * 9000 + ".c"), "too_large"),
        (metadata(padding="x" * 20000), "too_large"),
    ],
)
def test_malformed_metadata_is_refused_with_a_code(raw: str | None, code: str) -> None:
    with pytest.raises(IdentityRefused) as refused:
        parse_identity(raw)
    assert refused.value.code == code
    assert GRANT not in str(refused.value)


def test_session_must_be_this_room() -> None:
    with pytest.raises(IdentityRefused) as refused:
        parse_identity(metadata(), room_name="another-room")
    assert refused.value.code == "session_mismatch"
