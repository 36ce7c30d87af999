"""Single-use tokens (client assertions, session grants) are verified in full and never enter a cache."""

from __future__ import annotations

from tests.support.issuer import Harness


async def test_assertions_and_grants_leave_no_cached_token(issuer: Harness) -> None:
    state = issuer.app.state.issuer
    session = await issuer.session("alice", "read")
    response = await issuer.exchange(session["session_grant"])
    assert response.status_code == 200, response.text
    assert (await issuer.exchange(session["session_grant"])).json()["error"] == "invalid_grant"
    # The only way to observe it: the caches themselves. Each would otherwise hold the grant or an assertion.
    assert state.grants._verified == {}
    for entry in state.clients._clients.values():
        assert entry.endpoint._verified == {}
        assert entry.issuer._verified == {}
