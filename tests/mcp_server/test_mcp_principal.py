"""The caller built from verified claims: every claim it reads has the type it needs, or it is refused."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_server._auth._principal import InvalidPrincipal, Principal

CLAIMS: dict[str, Any] = {
    "sub": "alice",
    "client_id": "orchestrator",
    "scope": "read transact",
    "jti": "j1",
    "exp": 1_800_000_000,
    "sid": "room-1",
    "act": {"sub": "orchestrator"},
}


def test_the_principal_of_good_claims() -> None:
    principal = Principal.from_claims(CLAIMS)
    assert (principal.sub, principal.client_id, principal.jti) == ("alice", "orchestrator", "j1")
    assert principal.scopes == {"read", "transact"}
    assert (principal.exp, principal.sid, principal.act) == (1.8e9, "room-1", "orchestrator")
    assert principal.movement is None


@pytest.mark.parametrize(
    "changes",
    [
        {"sub": ""},
        {"client_id": None},
        {"jti": ""},
        {"jti": 5},
        {"scope": ["read"]},
        {"exp": True},
        {"exp": "1800000000"},
    ],
)
def test_wrongly_typed_claims_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidPrincipal):
        Principal.from_claims(CLAIMS | changes)
