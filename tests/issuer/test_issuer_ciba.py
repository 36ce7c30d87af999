"""The CIBA approval state machine under freezegun, on memory and on real Redis with two issuer apps."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from freezegun import freeze_time

from issuer import IssuerSettings, create_app
from issuer._oauth._approvals import GRACE, ApprovalRequest, MemoryApprovalStore
from issuer._oauth._authorization_details import parse_authorization_details
from keys import KeyPair, StaticKeys, Verifier, VerifyPolicy
from tests.support.clock import FakeClock
from tests.support.issuer import ISSUER, RESOURCE, Harness, never, payment


class FrozenClock(FakeClock):
    """The harness clock as freezegun moves it."""

    def __init__(self, frozen: Any) -> None:
        super().__init__()
        self.frozen = frozen

    def __call__(self) -> float:
        return time.time()  # looked up at call time: freezegun moves it

    def advance(self, seconds: float) -> None:
        self.frozen.tick(seconds)


def _wall_clock() -> float:
    return time.time()


@asynccontextmanager
async def _replicas(settings: list[IssuerSettings], keys: dict[str, KeyPair]) -> AsyncIterator[list[Harness]]:
    # Built before freezing: FastAPI imports pydantic.v1 lazily, which breaks under freezegun's date.
    apps = [create_app(s, clock=_wall_clock, rotation_sleep=never) for s in settings]
    with freeze_time("2026-03-01 09:00:00", real_asyncio=True) as frozen:
        clock = FrozenClock(frozen)
        async with AsyncExitStack() as stack:
            harnesses = []
            for app in apps:
                await stack.enter_async_context(app.router.lifespan_context(app))
                transport = httpx.ASGITransport(app=app)
                http = await stack.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url=ISSUER)
                )
                harnesses.append(Harness(app, http, clock, keys))
            yield harnesses


@pytest.fixture(params=["memory", "redis"])
async def pair(
    request: pytest.FixtureRequest,
    make_settings: Callable[..., IssuerSettings],
    client_keys: dict[str, KeyPair],
) -> AsyncIterator[tuple[Harness, Harness]]:
    """Two replicas on one Redis (requests alternate between them), or one in-memory issuer twice."""
    if request.param == "memory":
        async with _replicas([make_settings()], client_keys) as (one,):
            yield one, one
        return
    settings = make_settings(redis_url=request.getfixturevalue("redis_url"), keys_store="redis")
    async with _replicas([settings, settings], client_keys) as (a, b):
        yield a, b


def _error(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    error: str = response.json()["error"]
    return error


async def _requested(h: Harness, amount: str = "750.00") -> tuple[dict[str, Any], str]:
    """A live session (its token response) and an approval request for a payment of `amount`."""
    grant = (await h.session())["session_grant"]
    session = (await h.exchange(grant)).json()
    sid = (await h.app.state.issuer.refresh.peek(session["refresh_token"])).sid
    response = await h.bc_authorize(sid, payment(amount=amount), binding_message=f"Pay {amount} USD to Jane")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["expires_in"], body["interval"]) == (120, 2)
    assert response.headers["cache-control"] == "no-store"
    return session, body["auth_req_id"]


async def _claims(h: Harness, token: str) -> dict[str, Any]:
    jwks = (await h.http.get("/.well-known/jwks.json")).json()
    policy = VerifyPolicy(issuer=ISSUER, audience=RESOURCE, typ="at+jwt")
    return Verifier(StaticKeys(jwks), policy, clock=h.clock).verify(token)


async def test_pending_until_the_user_decides(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    _, auth_req_id = await _requested(a)
    for h in (b, a, b):
        a.clock.advance(2)
        assert _error(await h.poll(auth_req_id)) == "authorization_pending"


async def test_slow_down_when_polled_faster_than_the_interval(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    _, auth_req_id = await _requested(a)
    a.clock.advance(2)
    assert _error(await a.poll(auth_req_id)) == "authorization_pending"  # the first poll is due after 2 s
    a.clock.advance(1)
    assert _error(await b.poll(auth_req_id)) == "slow_down"  # and the interval is now 7 s
    a.clock.advance(6)
    assert _error(await a.poll(auth_req_id)) == "slow_down"  # 6 s < 7 s: and now 12 s
    a.clock.advance(12)
    assert _error(await b.poll(auth_req_id)) == "authorization_pending"
    a.clock.advance(12)
    assert _error(await a.poll(auth_req_id)) == "authorization_pending"


async def test_the_first_poll_is_due_after_the_interval(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    _, auth_req_id = await _requested(a)
    a.clock.advance(1.5)
    assert _error(await b.poll(auth_req_id)) == "slow_down"
    a.clock.advance(7)
    assert _error(await a.poll(auth_req_id)) == "authorization_pending"


async def test_approve_then_exactly_one_token_with_the_approved_details(
    pair: tuple[Harness, Harness],
) -> None:
    a, b = pair
    session, auth_req_id = await _requested(a)
    listed = (await b.approvals("alice")).json()["approvals"]
    assert [item["auth_req_id"] for item in listed] == [auth_req_id]
    item = listed[0]
    assert (item["user_id"], item["binding_message"]) == ("alice", "Pay 750.00 USD to Jane")
    assert item["authorization_details"] == json.loads(payment(amount="750.00"))
    assert item["expires_at"] == int(time.time()) + 120
    assert (await b.approvals("bob")).json() == {"approvals": []}
    decided = await a.decide(auth_req_id, "approve")
    assert decided.status_code == 200, decided.text
    assert decided.json() == {"auth_req_id": auth_req_id, "status": "approved"}
    assert (await a.approvals("alice")).json() == {"approvals": []}
    a.clock.advance(2)
    response = await b.poll(auth_req_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["token_type"], body["scope"], body["expires_in"]) == ("Bearer", "transact", 60)
    assert "refresh_token" not in body
    claims = await _claims(a, body["access_token"])
    assert claims["authorization_details"] == json.loads(payment(amount="750.00"))
    assert (claims["sub"], claims["client_id"], claims["act"]) == (
        "alice",
        "orchestrator",
        {"sub": "orchestrator"},
    )
    assert claims["sid"] == (await a.app.state.issuer.refresh.peek(session["refresh_token"])).sid
    a.clock.advance(2)
    assert _error(await a.poll(auth_req_id)) == "invalid_grant"  # single use


async def test_deny(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    _, auth_req_id = await _requested(a)
    assert (await b.decide(auth_req_id, "deny")).json()["status"] == "denied"
    a.clock.advance(2)
    assert _error(await a.poll(auth_req_id)) == "access_denied"
    assert (await b.decide(auth_req_id, "approve")).status_code == 409  # decided once, for good


async def test_expire(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    _, auth_req_id = await _requested(a)
    a.clock.advance(120)
    assert _error(await b.poll(auth_req_id)) == "expired_token"
    assert (await a.approvals("alice")).json() == {"approvals": []}
    late = await a.decide(auth_req_id, "approve")
    assert (late.status_code, late.json()["error"]) == (404, "not_found")


async def test_memory_forgets_a_request_after_its_grace_period() -> None:
    store = MemoryApprovalStore()
    detail = parse_authorization_details(payment())
    request = ApprovalRequest("r1", "orchestrator", "alice", "s1", detail, None, created_at=0, expires_at=120)
    assert await store.create(request, now=0)
    assert (await store.poll("r1", client_id="orchestrator", now=120 + GRACE - 1))[0] == "expired"
    assert (await store.poll("r1", client_id="orchestrator", now=120 + GRACE))[0] == "unknown"


async def test_regression_memory_approvals_prune_oldest_first_and_stay_bounded() -> None:
    # create() used to rebuild and scan every stored request: its cost grew with the history of approvals.
    store = MemoryApprovalStore()
    detail = parse_authorization_details(payment())
    users = [f"user{n}" for n in range(50)]
    window = 120 + GRACE  # a request is kept from creation to the end of its grace period
    for n in range(3000):  # one request a second, 25 minutes, each user every 50 s
        request = ApprovalRequest(
            f"r{n}", "orchestrator", users[n % 50], f"s{n}", detail, None, created_at=n, expires_at=n + 120
        )
        assert await store.create(request, now=n)
        if n == 1000:  # a late poll forgets a request before the next create reaches it in the heap
            late = f"r{n + 1 - window}"
            assert await store.get(late) is not None
            assert (await store.poll(late, client_id="orchestrator", now=n + 1))[0] == "unknown"
            assert await store.get(late) is None
        assert len(store._requests) <= window  # the only way to observe it: the store itself
        assert len(store._ends) <= window + 1
        assert len(store._by_user) <= len(users)
    now = 2999
    assert await store.get(f"r{now - window}") is None  # past its grace period: pruned
    assert await store.get(f"r{now - window + 1}") is not None  # expired, in grace: kept
    polled = await store.poll(f"r{now - window + 1}", client_id="orchestrator", now=now)
    assert polled[0] == "expired"
    live = await store.pending("user49", now=now)  # created every 50 s: three within the 120 s lifetime
    assert [r.auth_req_id for r in live] == ["r2899", "r2949", "r2999"]
    assert sum(len(ids) for ids in store._by_user.values()) == len(store._requests)


async def test_an_approved_request_expires_too(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    _, auth_req_id = await _requested(a)
    assert (await a.decide(auth_req_id, "approve")).status_code == 200
    a.clock.advance(120)
    assert _error(await b.poll(auth_req_id)) == "expired_token"


async def test_poll_by_another_client_is_refused_and_changes_nothing(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    _, auth_req_id = await _requested(a)
    assert (await a.decide(auth_req_id, "approve")).status_code == 200
    a.clock.advance(2)
    assert _error(await b.poll(auth_req_id, client_id="other")) == "invalid_grant"
    assert (await a.poll(auth_req_id)).status_code == 200


async def test_approval_of_a_revoked_sessions_request_is_refused(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    session, auth_req_id = await _requested(a)
    revoked = await b.http.post("/revoke", data={"token": session["refresh_token"], **b.auth("orchestrator")})
    assert revoked.status_code == 200
    refused = await a.decide(auth_req_id, "approve")
    assert (refused.status_code, refused.json()["error"]) == (409, "session_ended")
    a.clock.advance(2)
    assert _error(await b.poll(auth_req_id)) == "authorization_pending"  # still undecided; it will expire


async def test_a_session_revoked_after_approval_gets_no_token(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    session, auth_req_id = await _requested(a)
    assert (await a.decide(auth_req_id, "approve")).status_code == 200
    await b.http.post("/revoke", data={"token": session["refresh_token"], **b.auth("orchestrator")})
    a.clock.advance(2)
    assert _error(await b.poll(auth_req_id)) == "invalid_grant"


async def test_an_approved_movement_counts_toward_the_session_total(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    session, auth_req_id = await _requested(a, "450.00")
    assert (await b.decide(auth_req_id, "approve")).status_code == 200
    a.clock.advance(2)
    assert (await a.poll(auth_req_id)).status_code == 200
    small = await b.transact(session["refresh_token"], payment(amount="50.01", idempotency_key="k2"))
    assert _error(small) == "interaction_required"


async def test_concurrent_decisions_on_two_replicas_have_one_winner(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    _, auth_req_id = await _requested(a)
    answers = await asyncio.gather(a.decide(auth_req_id, "approve"), b.decide(auth_req_id, "deny"))
    assert sorted(r.status_code for r in answers) == [200, 409]


async def test_concurrent_polls_of_an_approved_request_give_one_token(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    _, auth_req_id = await _requested(a)
    assert (await a.decide(auth_req_id, "approve")).status_code == 200
    a.clock.advance(2)
    answers = await asyncio.gather(*(h.poll(auth_req_id) for h in (a, b, a, b)))
    assert sorted(r.status_code for r in answers) == [200, 400, 400, 400]


# -- bc-authorize's own checks -------------------------------------------------------------------


async def _live_sid(h: Harness) -> str:
    session = (await h.exchange((await h.session())["session_grant"])).json()
    sid: str = (await h.app.state.issuer.refresh.peek(session["refresh_token"])).sid
    return sid


async def test_bc_authorize_refusals(pair: tuple[Harness, Harness]) -> None:
    a, _ = pair
    sid = await _live_sid(a)
    good = payment(amount="750.00")
    cases = [
        (await a.bc_authorize(sid, "[]"), "invalid_authorization_details"),
        (await a.bc_authorize(sid, good, binding_message="x" * 81), "invalid_binding_message"),
        (await a.bc_authorize(sid, good, binding_message="Pay\u202eeno"), "invalid_binding_message"),
        (await a.bc_authorize(sid, good, binding_message="Pay\x1b[2J"), "invalid_binding_message"),
        (await a.bc_authorize(sid, good, scope="read"), "invalid_scope"),
        (await a.bc_authorize(sid, good, scope="read transact"), "invalid_scope"),
        (await a.bc_authorize("vb-nobody", good), "unknown_user_id"),
        (await a.bc_authorize("bad sid!", good), "unknown_user_id"),
        (await a.bc_authorize(sid, good, client_id="other"), "unknown_user_id"),  # not its session
        (await a.bc_authorize(sid, good, client_id="backend"), "unauthorized_client"),
        (await a.bc_authorize(sid, good, login_hint_token="x"), "invalid_request"),
    ]
    for response, error in cases:
        assert _error(response) == error
    missing = await a.http.post(
        "/bc-authorize", data={"scope": "transact", "login_hint": sid, **a.auth("orchestrator")}
    )
    assert _error(missing) == "invalid_request"
    assert (await a.bc_authorize(sid, good, binding_message="P" * 80)).status_code == 200
    unauthenticated = await a.http.post("/bc-authorize", data={"scope": "transact", "login_hint": sid})
    assert unauthenticated.status_code == 401


async def test_a_user_has_at_most_20_requests_in_flight(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    sid = await _live_sid(a)
    for n in range(20):
        assert (await (a, b)[n % 2].bc_authorize(sid, payment(idempotency_key=f"k{n}"))).status_code == 200
    assert _error(await a.bc_authorize(sid, payment(idempotency_key="k20"))) == "access_denied"
    a.clock.advance(120)  # expired requests stop counting
    assert (await b.bc_authorize(sid, payment(idempotency_key="k21"))).status_code == 200


async def test_approvals_need_the_backend_scope_and_strict_input(pair: tuple[Harness, Harness]) -> None:
    a, _ = pair
    _, auth_req_id = await _requested(a)
    assert (await a.http.get("/approvals", params={"user_id": "alice"})).status_code == 401
    sessions_only = await a.bearer("backend", "sessions:create")
    wrong = await a.http.get(
        "/approvals", params={"user_id": "alice"}, headers={"Authorization": f"Bearer {sessions_only}"}
    )
    assert (wrong.status_code, wrong.json()["error"]) == (403, "insufficient_scope")
    bearer = {"Authorization": f"Bearer {await a.bearer('backend', 'approvals:decide')}"}
    for params in ({}, {"user_id": ""}, {"user_id": "a b"}, {"user_id": "x" * 129}):
        assert (await a.http.get("/approvals", params=params, headers=bearer)).status_code == 400
    twice = await a.http.get("/approvals?user_id=alice&user_id=bob", headers=bearer)
    assert twice.status_code == 400
    for body in ({}, {"decision": "yes"}, {"decision": "approve", "amount": "1"}, {"decision": True}):
        answer = await a.http.post(f"/approvals/{auth_req_id}", json=body, headers=bearer)
        assert answer.status_code == 400, body
    for unknown in ("nope", "x" * 200, "%00"):
        answer = await a.http.post(f"/approvals/{unknown}", json={"decision": "approve"}, headers=bearer)
        assert answer.status_code == 404
    no_scope = await a.http.post(f"/approvals/{auth_req_id}", json={"decision": "approve"})
    assert no_scope.status_code == 401
    a.clock.advance(2)
    assert _error(await a.poll(auth_req_id)) == "authorization_pending"  # none of that decided anything


async def test_poll_refusals(pair: tuple[Harness, Harness]) -> None:
    a, _ = pair
    assert _error(await a.poll("x" * 200)) == "invalid_grant"
    assert _error(await a.poll("unknown")) == "invalid_grant"
    missing = await a.token("orchestrator", grant_type="urn:openid:params:grant-type:ciba")
    assert _error(missing) == "invalid_request"
    assert _error(await a.poll("unknown", client_id="backend")) == "unauthorized_client"


async def test_every_step_is_audited_without_a_token(
    pair: tuple[Harness, Harness], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    with caplog.at_level(logging.INFO, logger="voicebank.audit"):
        session, auth_req_id = await _requested(a)
        await b.approvals("alice")
        a.clock.advance(2)
        await a.poll(auth_req_id)
        await b.decide(auth_req_id, "approve")
        a.clock.advance(2)
        token = (await a.poll(auth_req_id)).json()["access_token"]
        denied = await a.transact(session["refresh_token"], payment(amount="1.00"))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "voicebank.audit"]
    steps = [(line["event"], line["client_id"], line["outcome"], line["reason"]) for line in lines]
    # One line per request (the backend's own client_credentials bearers included), never two.
    assert steps == [
        ("token.client_credentials", "backend", "ok", None),
        ("sessions.create", "backend", "ok", None),
        ("token.exchange", "orchestrator", "ok", None),
        ("bc_authorize", "orchestrator", "ok", None),
        ("token.client_credentials", "backend", "ok", None),
        ("approvals.list", "backend", "ok", None),
        ("token.ciba", "orchestrator", "refused", "authorization_pending"),
        ("token.client_credentials", "backend", "ok", None),
        ("approvals.decide", "backend", "ok", "approved"),
        ("token.ciba", "orchestrator", "ok", None),
        ("token.transact", "orchestrator", "refused", "above_threshold"),
    ]
    assert denied.json()["error"] == "interaction_required"
    fields = ["time", "service", "event", "client_id", "sub", "sid", "scope", "jti", "kid", "exp", "family"]
    assert all([*fields, "outcome", "reason", "trace_id"] == list(line) for line in lines)
    sid = lines[1]["sid"]
    about = [(line["sub"], line["sid"], line["scope"]) for line in lines]
    assert [about[i] for i in (3, 6, 8, 9, 10)] == [("alice", sid, "transact")] * 5  # each payment step
    issued = lines[9]
    assert (issued["service"], issued["sub"], issued["client_id"], issued["scope"]) == (
        "issuer",
        "alice",
        "orchestrator",
        "transact",
    )
    assert all(issued[name] for name in ("jti", "kid", "exp", "family", "sid"))
    text = caplog.text
    for secret in (token, session["refresh_token"], session["access_token"], auth_req_id):
        assert secret not in text
