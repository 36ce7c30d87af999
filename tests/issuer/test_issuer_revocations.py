"""`POST /admin/revocations`: an operator ends a session, a user or a client at once, on every replica."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from issuer import IssuerSettings, issuer_state
from keys import KeyPair
from tests.support.clock import FakeClock
from tests.support.issuer import Harness, running


async def revoke(h: Harness, body: Any, scope: str = "sessions:revoke") -> httpx.Response:
    token = await h.bearer("admin", scope)
    return await h.http.post("/admin/revocations", json=body, headers={"Authorization": f"Bearer {token}"})


async def login(h: Harness, user: str) -> tuple[str, str]:
    """A session of `user` exchanged by the orchestrator: its session id and refresh token."""
    session = await h.session(user, scope="read")
    response = await h.exchange(session["session_grant"], scope="read")
    assert response.status_code == 200, response.text
    return session["session_id"], response.json()["refresh_token"]


async def other_family(h: Harness, user: str) -> str:
    """A refresh family held by the client `other` (grants name the orchestrator, so made in the store)."""
    store = issuer_state(h.app).refresh
    return await store.create(client_id="other", sub=user, sid=f"other-{user}", scope="read", now=h.clock())


async def alive(h: Harness, refresh_token: str, client_id: str = "orchestrator") -> str | None:
    """The next refresh token when the family still lives, else None."""
    response = await h.refresh(refresh_token, client_id=client_id)
    return response.json()["refresh_token"] if response.status_code == 200 else None


async def test_revoking_a_session_ends_only_that_session(h: Harness) -> None:
    sid, doomed = await login(h, "alice")
    _, kept = await login(h, "alice")
    answer = await revoke(h, {"sid": sid})
    assert (answer.status_code, answer.json()) == (200, {"revoked_families": 1})
    assert answer.headers["cache-control"] == "no-store"
    assert await alive(h, doomed) is None
    assert await alive(h, kept) is not None
    assert (await revoke(h, {"sid": sid})).json() == {"revoked_families": 0}


async def test_revoking_a_user_ends_every_session_of_that_user_and_no_other(h: Harness) -> None:
    _, first = await login(h, "alice")
    second = await other_family(h, "alice")
    _, bob = await login(h, "bob")
    assert (await revoke(h, {"sub": "alice"})).json() == {"revoked_families": 2}
    assert await alive(h, first) is None
    assert await alive(h, second, client_id="other") is None
    assert await alive(h, bob) is not None


async def test_revoking_a_client_ends_every_family_it_holds(h: Harness) -> None:
    _, first = await login(h, "alice")
    _, second = await login(h, "bob")
    other = await other_family(h, "alice")
    assert (await revoke(h, {"client_id": "orchestrator"})).json() == {"revoked_families": 2}
    assert await alive(h, first) is None
    assert await alive(h, second) is None
    assert await alive(h, other, client_id="other") is not None


async def test_expired_families_are_revoked_but_not_counted(h: Harness) -> None:
    _, idle = await login(h, "alice")
    h.clock.advance(1801)  # past the idle lifetime
    _, fresh = await login(h, "alice")
    assert (await revoke(h, {"sub": "alice"})).json() == {"revoked_families": 1}
    assert await alive(h, idle) is None
    assert await alive(h, fresh) is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"sid": "a", "sub": "b"},
        {"sid": "a", "sub": "b", "client_id": "c"},
        {"sid": 7},
        {"sub": ""},
        {"sub": "x" * 201},
        {"sub": "line\nbreak"},
        {"session": "a"},
        ["sid"],
    ],
)
async def test_a_body_naming_not_exactly_one_target_is_refused(h: Harness, body: Any) -> None:
    _, token = await login(h, "alice")
    answer = await revoke(h, body)
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request")
    assert await alive(h, token) is not None


async def test_revocation_needs_the_sessions_revoke_scope(h: Harness) -> None:
    answer = await revoke(h, {"sub": "alice"}, scope="keys:admin")
    assert answer.status_code == 403
    assert 'scope="sessions:revoke"' in answer.headers["www-authenticate"]
    backend = await h.token("backend", grant_type="client_credentials", scope="sessions:revoke")
    assert backend.json()["error"] == "invalid_scope"  # dev clients: only the admin client holds it


async def test_a_revocation_on_one_replica_holds_at_once_on_another(
    make_settings: Callable[..., IssuerSettings],
    clock: FakeClock,
    client_keys: dict[str, KeyPair],
    redis_url: str,
) -> None:
    settings = make_settings(redis_url=redis_url, keys_store="redis")
    async with running(settings, clock, client_keys) as one, running(settings, clock, client_keys) as two:
        sid, token = await login(one, "alice")
        _, other = await login(one, "bob")
        assert (await revoke(two, {"sid": sid})).json() == {"revoked_families": 1}
        assert await alive(one, token) is None
        assert await alive(two, other) is not None
