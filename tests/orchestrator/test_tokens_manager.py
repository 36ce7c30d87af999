"""The token manager against an issuer over `httpx.ASGITransport`, with time moved by freezegun."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from fastapi import FastAPI
from freezegun import freeze_time

from issuer import create_app
from keys import assertion_form
from orchestrator import (
    ApprovalDeclined,
    ApprovalExpired,
    AuthorizationLost,
    IssuerClient,
    Movement,
    RetryPolicy,
    ServiceUnavailable,
    TokenManager,
    ToolRefused,
)
from orchestrator._tokens._errors import GrantRevoked, InteractionRequired, SessionEnded
from orchestrator._tokens._retry import Sleep
from tests.support.issuer import CLIENT_KEYS, ISSUER, issuer_with_clients

CIBA = "urn:openid:params:grant-type:ciba"


def _wall_clock() -> float:
    return time.time()  # looked up at call time: freezegun moves it


async def _never(_: float) -> None:
    await asyncio.Event().wait()  # the issuer's key-rotation loop: not under test here


class Wire(httpx.AsyncBaseTransport):
    """The network between orchestrator and issuer: records each form and answer, and can be cut."""

    def __init__(self, app: FastAPI) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.down = False
        self.forms: list[dict[str, str]] = []
        self.answers: list[dict[str, object]] = []
        self.failed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            self.failed += 1
            raise httpx.ConnectError("connection refused", request=request)
        self.forms.append({k: v[0] for k, v in parse_qs(request.content.decode()).items()})
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        self.answers.append(json.loads(body) if body else {})
        return httpx.Response(response.status_code, headers=response.headers, content=body)

    def grants(self, scope: str) -> list[dict[str, str]]:
        return [f for f in self.forms if f.get("scope") == scope and "grant_type" in f]

    def refreshes(self) -> list[dict[str, str]]:
        return [f for f in self.forms if f.get("grant_type") == "refresh_token"]


async def _no_sleep(_: float) -> None:
    return None


_KEYS = itertools.count(1)


def movement(amount: str = "10.00") -> Movement:
    """A payment the user confirmed, with a fresh idempotency key."""
    return Movement("payment", "acc_checking", "pye_jane", amount, "USD", f"key-{next(_KEYS)}", "Pay Jane")


async def token(tokens: TokenManager, scope: str) -> str:
    """A token of `scope`; a transact one bound to a fresh small payment."""
    if scope == "transact":
        return await tokens.transact_token(movement())
    return await tokens.get_token(scope)


@dataclass
class Rig:
    """The real issuer in-process, a session on it, and the orchestrator's token manager."""

    http: httpx.AsyncClient
    wire: Wire
    frozen: Any
    grant: str = ""
    sid: str = ""
    slept: list[float] = field(default_factory=list)

    def issuer_client(self) -> IssuerClient:
        return IssuerClient(
            self.http,
            issuer=ISSUER,
            client_id="orchestrator",
            key=CLIENT_KEYS["orchestrator"],
            retry=RetryPolicy(attempts=3),
            sleep=_no_sleep,
        )

    async def session(self, scope: str = "read transact configure") -> str:
        """A fresh session grant from `/sessions`, as the user's app backend would get it."""
        auth = assertion_form("backend", CLIENT_KEYS["backend"], f"{ISSUER}/token", time.time())
        answer = await self.http.post(
            f"{ISSUER}/token", data={"grant_type": "client_credentials", "scope": "sessions:create", **auth}
        )
        assert answer.status_code == 200, answer.text
        bearer = answer.json()["access_token"]
        created = await self.http.post(
            f"{ISSUER}/sessions",
            json={"user_id": "alice", "scope": scope},
            headers={"Authorization": f"Bearer {bearer}"},
        )
        assert created.status_code == 201, created.text
        grant: str = created.json()["session_grant"]
        self.sid = created.json()["session_id"]
        self.wire.forms.clear()
        self.wire.answers.clear()
        return grant

    async def started(
        self, scope: str = "read transact configure", sleep: Sleep | None = None
    ) -> TokenManager:
        grant = await self.session(scope)
        tokens = TokenManager(self.issuer_client(), session_id=self.sid, sleep=sleep or self.sleep)
        await tokens.start(grant, "read")
        return tokens

    async def sleep(self, seconds: float) -> None:
        """The token manager's wait between approval polls: recorded, and time moves on that much."""
        self.slept.append(seconds)
        self.frozen.tick(seconds)
        await asyncio.sleep(0)

    async def app(self, decision: str) -> None:
        """The user's banking app decides the one pending approval (client backend, approvals:decide)."""
        auth = assertion_form("backend", CLIENT_KEYS["backend"], f"{ISSUER}/token", time.time())
        form = {"grant_type": "client_credentials", "scope": "approvals:decide", **auth}
        answer = await self.http.post(f"{ISSUER}/token", data=form)
        bearer = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        listed = await self.http.get(f"{ISSUER}/approvals", params={"user_id": "alice"}, headers=bearer)
        (request,) = listed.json()["approvals"]
        decided = await self.http.post(
            f"{ISSUER}/approvals/{request['auth_req_id']}", json={"decision": decision}, headers=bearer
        )
        assert decided.status_code == 200, decided.text

    def polls(self) -> int:
        return sum(1 for f in self.forms_since_start if f.get("grant_type") == CIBA)

    @property
    def forms_since_start(self) -> list[dict[str, str]]:
        return self.wire.forms


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    # Built before freezing: FastAPI imports pydantic.v1 lazily, which breaks under freezegun's date.
    app = create_app(issuer_with_clients(tmp_path, CLIENT_KEYS), clock=_wall_clock, rotation_sleep=_never)
    with freeze_time("2026-03-01 09:00:00", real_asyncio=True) as frozen:
        async with app.router.lifespan_context(app):
            wire = Wire(app)
            async with httpx.AsyncClient(transport=wire) as http:
                yield Rig(http, wire, frozen)


async def test_two_hour_call_with_a_tool_every_20_s_refreshes_read_about_every_240_s(rig: Rig) -> None:
    tokens = await rig.started()
    served: set[str] = set()
    for _ in range(7200 // 20 + 1):  # t = 0, 20, ..., 7200: every call succeeds
        served.add(await tokens.get_token("read"))
        rig.frozen.tick(20)
    read_grants = rig.wire.grants("read")
    assert 30 <= len(read_grants) <= 31  # the exchange, then one refresh each 240 s
    assert len(served) == len(read_grants)
    # Each refresh presents exactly the refresh token the previous answer handed out.
    handed_out = [a["refresh_token"] for a in rig.wire.answers]
    presented = [f["refresh_token"] for f in rig.wire.refreshes()]
    assert presented == handed_out[:-1]
    assert len(set(handed_out)) == len(handed_out)
    assert tokens.lost is None


async def test_100_concurrent_callers_at_expiry_cause_exactly_one_refresh(rig: Rig) -> None:
    tokens = await rig.started()
    first = await tokens.get_token("read")
    rig.frozen.tick(300)  # the token has just expired
    got = await asyncio.gather(*(tokens.get_token("read") for _ in range(100)))
    assert len(set(got)) == 1
    assert got[0] != first
    assert len(rig.wire.refreshes()) == 1


async def test_concurrent_scopes_are_serialised_so_no_refresh_token_is_presented_twice(rig: Rig) -> None:
    tokens = await rig.started()
    scopes = ["configure", "transact", "transact", "configure", "transact", "read"] * 4
    got = await asyncio.gather(*(token(tokens, s) for s in scopes))
    assert all(got)
    presented = [f["refresh_token"] for f in rig.wire.refreshes()]
    assert len(presented) == len(set(presented))
    assert tokens.lost is None
    assert await token(tokens, "transact")  # the family is alive


async def test_transact_tokens_are_fresh_every_time_and_never_cached(rig: Rig) -> None:
    tokens = await rig.started()
    t1 = await token(tokens, "transact")
    t2 = await token(tokens, "transact")
    assert t1 != t2
    assert len(rig.wire.grants("transact")) == 2
    assert [a["expires_in"] for a in rig.wire.answers[-2:]] == [60, 60]


async def test_configure_is_cached_like_read(rig: Rig) -> None:
    tokens = await rig.started()
    c1 = await tokens.get_token("configure")
    rig.frozen.tick(200)
    assert await tokens.get_token("configure") == c1
    rig.frozen.tick(41)
    assert await tokens.get_token("configure") != c1
    assert len(rig.wire.grants("configure")) == 2


async def test_issuer_down_serves_the_cached_token_until_expiry_then_unavailable_then_recovers(
    rig: Rig,
) -> None:
    tokens = await rig.started()
    cached = await tokens.get_token("read")
    rig.wire.down = True
    for _ in range(14):  # t = 20 .. 280: still valid, even past the early-refresh point
        rig.frozen.tick(20)
        assert await tokens.get_token("read") == cached
    assert rig.wire.failed > 0  # it did try to refresh ahead of expiry
    rig.frozen.tick(20)  # t = 300: expired
    with pytest.raises(ServiceUnavailable) as caught:
        await tokens.get_token("read")
    assert "try again" in str(caught.value)
    assert tokens.lost is None  # unavailable is not lost
    rig.wire.down = False
    rig.frozen.tick(20)
    recovered = await tokens.get_token("read")
    assert recovered != cached
    assert len(rig.wire.refreshes()) == 1


async def test_early_refresh_failures_are_not_retried_on_every_call(rig: Rig) -> None:
    tokens = await rig.started()
    await tokens.get_token("read")
    rig.wire.down = True
    rig.frozen.tick(250)
    for _ in range(10):
        await tokens.get_token("read")
    assert rig.wire.failed == 3  # one refresh (three tries), then a quiet period while the token lasts


async def test_invalid_grant_loses_authorization_and_the_issuer_is_never_called_again(rig: Rig) -> None:
    tokens = await rig.started()
    await tokens.get_token("configure")
    spent = rig.wire.refreshes()[-1]["refresh_token"]
    # A replayed (stolen) refresh token: the issuer revokes the whole family.
    with pytest.raises(GrantRevoked):
        await rig.issuer_client().refresh(spent, "read")
    rig.frozen.tick(300)
    calls = len(rig.wire.forms)
    with pytest.raises(GrantRevoked) as caught:
        await tokens.get_token("read")
    assert isinstance(caught.value, AuthorizationLost)
    assert "no longer have permission" in str(caught.value)
    assert len(rig.wire.forms) == calls + 1
    for scope in ("read", "configure", "transact", "read"):
        with pytest.raises(AuthorizationLost):
            await token(tokens, scope)
    assert await tokens.revoke() is True
    assert len(rig.wire.forms) == calls + 1  # nothing more reached the issuer
    assert tokens.lost is not None
    assert tokens.lost.code == "grant_revoked"


async def test_a_cached_token_is_not_served_once_authorization_is_lost(rig: Rig) -> None:
    tokens = await rig.started()
    assert await tokens.get_token("read")  # cached, valid for 240 s more
    current = rig.wire.answers[-1]["refresh_token"]
    auth = assertion_form("orchestrator", CLIENT_KEYS["orchestrator"], f"{ISSUER}/token", time.time())
    revoked = await rig.http.post(f"{ISSUER}/revoke", data={"token": current, **auth})
    assert revoked.status_code == 200
    with pytest.raises(GrantRevoked):
        await token(tokens, "transact")
    with pytest.raises(AuthorizationLost):
        await tokens.get_token("read")


async def test_invalid_scope_refuses_that_tool_but_keeps_the_session(rig: Rig) -> None:
    tokens = await rig.started(scope="read")
    with pytest.raises(ToolRefused, match="payments"):
        await token(tokens, "transact")
    assert tokens.lost is None
    rig.frozen.tick(250)
    assert await tokens.get_token("read")
    assert tokens.lost is None


async def test_invalidate_forces_one_refresh_but_not_when_already_replaced(rig: Rig) -> None:
    tokens = await rig.started()
    old = await tokens.get_token("read")
    tokens.invalidate("read", old)
    new = await tokens.get_token("read")
    assert new != old
    tokens.invalidate("read", old)  # a late 401 for the old token must not drop the new one
    assert await tokens.get_token("read") == new
    assert len(rig.wire.grants("read")) == 2


async def test_revoke_at_call_end_revokes_the_family_and_ends_the_session(rig: Rig) -> None:
    tokens = await rig.started()
    await tokens.get_token("configure")
    last = rig.wire.answers[-1]["refresh_token"]
    assert await tokens.revoke() is True
    assert rig.wire.forms[-1]["token"] == last
    with pytest.raises(SessionEnded):
        await tokens.get_token("read")
    assert await tokens.revoke() is True  # twice is harmless and does not call the issuer
    assert len([f for f in rig.wire.forms if "token" in f]) == 1
    # The issuer agrees: the revoked family refreshes no more.
    with pytest.raises(GrantRevoked):
        await rig.issuer_client().refresh(str(last), "read")


async def test_revoke_with_the_issuer_down_reports_false_and_still_ends_the_session(rig: Rig) -> None:
    tokens = await rig.started()
    rig.wire.down = True
    assert await tokens.revoke() is False
    with pytest.raises(AuthorizationLost):
        await tokens.get_token("read")


async def test_a_spent_session_grant_is_refused(rig: Rig) -> None:
    grant = await rig.session()
    tokens = TokenManager(rig.issuer_client())
    await tokens.start(grant, "read")
    again = TokenManager(rig.issuer_client())
    with pytest.raises(AuthorizationLost):
        await again.start(grant, "read")
    with pytest.raises(RuntimeError):
        await tokens.start(grant, "read")


async def test_tokens_before_the_exchange_are_a_programming_error(rig: Rig) -> None:
    tokens = TokenManager(rig.issuer_client())
    with pytest.raises(RuntimeError):
        await tokens.get_token("read")


async def test_an_exchange_that_never_reached_the_issuer_can_be_tried_again(rig: Rig) -> None:
    grant = await rig.session()
    tokens = TokenManager(rig.issuer_client())
    rig.wire.down = True
    with pytest.raises(ServiceUnavailable):
        await tokens.start(grant, "read")
    rig.wire.down = False
    await tokens.start(grant, "read")
    assert await tokens.get_token("read")


# -- payments bound to one movement, and approval on the user's own device -------------------------------


async def test_a_transact_token_carries_exactly_the_movement(rig: Rig) -> None:
    tokens = await rig.started()
    confirmed = movement("12.5")
    await tokens.transact_token(confirmed)
    (form,) = rig.wire.grants("transact")
    assert json.loads(form["authorization_details"]) == json.loads(confirmed.authorization_details())
    assert json.loads(form["authorization_details"])[0]["amount"] == "12.5"


async def test_get_token_never_hands_out_an_unbound_transact_token(rig: Rig) -> None:
    tokens = await rig.started()
    sent = len(rig.wire.forms)
    with pytest.raises(ValueError, match="bound to one movement"):
        await tokens.get_token("transact")
    assert len(rig.wire.forms) == sent


async def test_above_the_threshold_the_issuer_asks_for_approval_and_the_session_goes_on(rig: Rig) -> None:
    tokens = await rig.started()
    with pytest.raises(InteractionRequired):
        await tokens.transact_token(movement("750.00"))
    assert tokens.lost is None
    assert await tokens.get_token("configure")  # the refresh token was not spent
    assert await token(tokens, "transact")


async def test_approved_in_the_app_the_poll_gets_the_token_at_the_first_interval(rig: Rig) -> None:
    tokens = await rig.started()
    request = await tokens.request_approval(movement("750.00"))
    assert (request.expires_in, request.interval) == (120, 2)
    await rig.app("approve")
    approved = await tokens.await_approval(request)
    assert approved
    assert rig.slept == [2]
    assert rig.polls() == 1
    bc = next(f for f in rig.wire.forms if "login_hint" in f)
    assert (bc["login_hint"], bc["binding_message"], bc["scope"]) == (rig.sid, "Pay Jane", "transact")


async def test_polls_follow_the_interval_and_slow_down_adds_five_seconds(rig: Rig) -> None:
    early = True

    async def sleep(seconds: float) -> None:
        nonlocal early
        rig.slept.append(seconds)
        # The first wait ends a second early (a timer firing early, a skewed clock): the issuer says
        # slow_down, and every later wait is 5 s longer.
        rig.frozen.tick(seconds - 1 if early else seconds)
        early = False
        if len(rig.slept) == 4:
            await rig.app("approve")

    tokens = await rig.started(sleep=sleep)
    request = await tokens.request_approval(movement("750.00"))
    assert await tokens.await_approval(request)
    assert rig.slept == [2, 7, 7, 7]
    answers = [
        a.get("error")
        for f, a in zip(rig.wire.forms, rig.wire.answers, strict=True)
        if f.get("grant_type") == CIBA
    ]
    assert answers == ["slow_down", "authorization_pending", "authorization_pending", None]


async def test_declined_in_the_app_is_approval_declined(rig: Rig) -> None:
    tokens = await rig.started()
    request = await tokens.request_approval(movement("750.00"))
    await rig.app("deny")
    with pytest.raises(ApprovalDeclined):
        await tokens.await_approval(request)
    assert tokens.lost is None


async def test_nobody_deciding_is_approval_expired_after_at_most_interval_polls(rig: Rig) -> None:
    tokens = await rig.started()
    request = await tokens.request_approval(movement("750.00"))
    with pytest.raises(ApprovalExpired):
        await tokens.await_approval(request)
    assert rig.polls() <= 120 / 2 + 1
    assert tokens.lost is None


async def test_hanging_up_stops_the_polls(rig: Rig) -> None:
    second_wait, hung_up = asyncio.Event(), asyncio.Event()

    async def sleep(seconds: float) -> None:
        rig.slept.append(seconds)
        rig.frozen.tick(seconds)
        if len(rig.slept) == 2:
            second_wait.set()
            await hung_up.wait()

    tokens = await rig.started(sleep=sleep)
    request = await tokens.request_approval(movement("750.00"))
    waiting = asyncio.create_task(tokens.await_approval(request))
    await second_wait.wait()
    await tokens.revoke()
    hung_up.set()
    with pytest.raises(SessionEnded):
        await waiting
    assert rig.polls() == 1  # no poll after the call ended
