"""The token manager against an issuer over `httpx.ASGITransport`, with time moved by freezegun."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx
import pytest
from freezegun import freeze_time
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import keys
from orchestrator._banking import AuthorizationLost, ServiceUnavailable, ToolRefused
from orchestrator._issuer_client import IssuerClient
from orchestrator._token_manager import TokenManager
from orchestrator._tokens_errors import GrantRevoked, SessionEnded
from orchestrator._tokens_retry import RetryPolicy

ISSUER = "http://issuer.test"
CLIENT_KEY = keys.generate_key("ES256")


@dataclass
class _Family:
    scope: set[str]
    current: str
    revoked: bool = False
    spent: set[str] = field(default_factory=set)


class StandInIssuer:
    """A minimal issuer following DESIGN.md wire formats: single-use grants, rotating refresh families."""

    def __init__(self, grant_scope: str = "read transact configure") -> None:
        self.grants = {"grant-1": set(grant_scope.split())}
        self.families: dict[str, _Family] = {}
        self.app = Starlette(routes=[Route("/token", self.token, methods=["POST"]), Route("/revoke", self.revoke, methods=["POST"])])

    def _family(self, token: str) -> _Family | None:
        return next((f for f in self.families.values() if token == f.current or token in f.spent), None)

    async def _form(self, request: Request) -> dict[str, str] | None:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        try:
            header, payload, signature = form["client_assertion"].split(".")
            keys.VerifyKey.from_jwk(CLIENT_KEY.public_jwk()).check_signature(
                f"{header}.{payload}".encode(), keys._b64.b64url_decode(signature)  # type: ignore[attr-defined]
            )
        except (KeyError, ValueError, keys.TokenError):
            return None
        return form

    async def token(self, request: Request) -> Response:
        form = await self._form(request)
        if form is None:
            return JSONResponse({"error": "invalid_client"}, 401)
        scope = form.get("scope", "read")
        if form["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange":
            granted = self.grants.pop(form["subject_token"], None)
            if granted is None:
                return JSONResponse({"error": "invalid_grant"}, 400)
            family = _Family(granted, secrets.token_urlsafe(8))
            self.families[secrets.token_hex(4)] = family
        elif form["grant_type"] == "refresh_token":
            found = self._family(form["refresh_token"])
            if found is None or found.revoked:
                return JSONResponse({"error": "invalid_grant"}, 400)
            if form["refresh_token"] in found.spent:
                found.revoked = True  # reuse: the whole family dies
                return JSONResponse({"error": "invalid_grant"}, 400)
            family = found
            family.spent.add(family.current)
            family.current = secrets.token_urlsafe(8)
        else:
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        if not set(scope.split()) <= family.scope:
            return JSONResponse({"error": "invalid_scope"}, 400)
        return JSONResponse(
            {
                "access_token": f"at-{scope}-{secrets.token_hex(4)}",
                "token_type": "Bearer",
                "expires_in": 60 if scope == "transact" else 300,
                "scope": scope,
                "refresh_token": family.current,
            },
            headers={"Cache-Control": "no-store"},
        )

    async def revoke(self, request: Request) -> Response:
        form = await self._form(request)
        if form is None:
            return JSONResponse({"error": "invalid_client"}, 401)
        found = self._family(form["token"])
        if found is not None:
            found.revoked = True
        return Response(status_code=200)


class Wire(httpx.AsyncBaseTransport):
    """The network between orchestrator and issuer: records each form, and can be cut."""

    def __init__(self, app: Starlette) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.down = False
        self.forms: list[dict[str, str]] = []
        self.failed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            self.failed += 1
            raise httpx.ConnectError("connection refused", request=request)
        self.forms.append({k: v[0] for k, v in parse_qs(request.content.decode()).items()})
        return await self.inner.handle_async_request(request)

    def grants(self, scope: str) -> list[dict[str, str]]:
        return [f for f in self.forms if f.get("scope") == scope]


async def _no_sleep(_: float) -> None:
    return None


@dataclass
class Rig:
    issuer: StandInIssuer
    wire: Wire
    tokens: TokenManager


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    issuer = StandInIssuer()
    wire = Wire(issuer.app)
    async with httpx.AsyncClient(transport=wire) as http:
        client = IssuerClient(
            http, issuer=ISSUER, client_id="orchestrator", key=CLIENT_KEY, retry=RetryPolicy(attempts=3), sleep=_no_sleep
        )
        yield Rig(issuer, wire, TokenManager(client))


async def test_two_hour_call_with_a_tool_every_20_s_refreshes_read_about_every_240_s(rig: Rig) -> None:
    with freeze_time("2026-03-01 09:00:00", real_asyncio=True) as frozen:
        await rig.tokens.start("grant-1", "read")
        served: set[str] = set()
        refresh_tokens_seen: list[str] = []
        for _ in range(7200 // 20 + 1):  # t = 0, 20, ..., 7200
            served.add(await rig.tokens.get_token("read"))
            frozen.tick(20)
    read_grants = rig.wire.grants("read")
    assert 30 <= len(read_grants) <= 31  # the exchange, then one refresh each 240 s
    assert len(served) == len(read_grants)
    refreshes = [f for f in read_grants if f["grant_type"] == "refresh_token"]
    refresh_tokens_seen = [f["refresh_token"] for f in refreshes]
    assert len(set(refresh_tokens_seen)) == len(refresh_tokens_seen)  # each refresh presents a new token
    family = next(iter(rig.issuer.families.values()))
    assert not family.revoked
    assert family.spent == set(refresh_tokens_seen)


async def test_100_concurrent_callers_at_expiry_cause_exactly_one_refresh(rig: Rig) -> None:
    with freeze_time("2026-03-01 09:00:00", real_asyncio=True) as frozen:
        await rig.tokens.start("grant-1", "read")
        first = await rig.tokens.get_token("read")
        frozen.tick(300)  # the token has just expired
        tokens = await asyncio.gather(*(rig.tokens.get_token("read") for _ in range(100)))
    assert len(set(tokens)) == 1
    assert tokens[0] != first
    assert len([f for f in rig.wire.forms if f["grant_type"] == "refresh_token"]) == 1


async def test_concurrent_scopes_are_serialised_so_no_refresh_token_is_presented_twice(rig: Rig) -> None:
    with freeze_time("2026-03-01 09:00:00", real_asyncio=True):
        await rig.tokens.start("grant-1", "read")
        got = await asyncio.gather(
            *(rig.tokens.get_token(s) for s in ["configure", "transact", "transact", "configure", "transact"] * 4)
        )
    assert all(got)
    presented = [f["refresh_token"] for f in rig.wire.forms if f["grant_type"] == "refresh_token"]
    assert len(presented) == len(set(presented))
    assert not next(iter(rig.issuer.families.values())).revoked


async def test_transact_tokens_are_fresh_every_time_and_never_cached(rig: Rig) -> None:
    with freeze_time("2026-03-01 09:00:00", real_asyncio=True):
        await rig.tokens.start("grant-1", "read")
        t1 = await rig.tokens.get_token("transact")
        t2 = await rig.tokens.get_token("transact")
    assert t1 != t2
    assert len(rig.wire.grants("transact")) == 2


async def test_configure_is_cached_like_read(rig: Rig) -> None:
    with freeze_time("2026-03-01 09:00:00", real_asyncio=True) as frozen:
        await rig.tokens.start("grant-1", "read")
        c1 = await rig.tokens.get_token("configure")
        frozen.tick(200)
        assert await rig.tokens.get_token("configure") == c1
        frozen.tick(41)
        assert await rig.tokens.get_token("configure") != c1
    assert len(rig.wire.grants("configure")) == 2


async def test_issuer_down_serves_the_cached_token_until_expiry_then_unavailable_then_recovers(rig: Rig) -> None:
    with freeze_time("2026-03-01 09:00:00", real_asyncio=True) as frozen:
        await rig.tokens.start("grant-1", "read")
        cached = await rig.tokens.get_token("read")
        rig.wire.down = True
        for _ in range(14):  # t = 20 .. 280: still valid, even past the early-refresh point
            frozen.tick(20)
            assert await rig.tokens.get_token("read") == cached
        assert rig.wire.failed > 0  # it did try to refresh ahead of expiry
        frozen.tick(20)  # t = 300: expired
        with pytest.raises(ServiceUnavailable) as caught:
            await rig.tokens.get_token("read")
        assert "try again" in str(caught.value)
        assert rig.tokens.lost is None  # unavailable is not lost
        rig.wire.down = False
        frozen.tick(20)
        recovered = await rig.tokens.get_token("read")
    assert recovered != cached


async def test_early_refresh_failures_are_not_retried_on_every_call(rig: Rig) -> None:
    with freeze_time("2026-03-01 09:00:00", real_asyncio=True) as frozen:
        await rig.tokens.start("grant-1", "read")
        await rig.tokens.get_token("read")
        rig.wire.down = True
        frozen.tick(250)
        for _ in range(10):
            await rig.tokens.get_token("read")
        assert rig.wire.failed == 3  # one refresh (three tries), then a quiet period while the token lasts


async def test_invalid_grant_loses_authorization_and_the_issuer_is_never_called_again(rig: Rig) -> None:
    with freeze_time("2026-03-01 09:00:00", real_asyncio=True) as frozen:
        await rig.tokens.start("grant-1", "read")
        next(iter(rig.issuer.families.values())).revoked = True  # e.g. a reused token revoked the family
        frozen.tick(300)
        with pytest.raises(GrantRevoked) as caught:
            await rig.tokens.get_token("read")
        assert isinstance(caught.value, AuthorizationLost)
        calls = len(rig.wire.forms)
        for scope in ("read", "configure", "transact"):
            with pytest.raises(AuthorizationLost):
                await rig.tokens.get_token(scope)
        assert await rig.tokens.revoke() is True
    assert len(rig.wire.forms) == calls
    assert rig.tokens.lost is not None
    assert rig.tokens.lost.code == "grant_revoked"


async def test_a_stolen_and_reused_refresh_token_ends_the_session(rig: Rig) -> None:
    with freeze_time("2026-03-01 09:00:00", real_asyncio=True):
        await rig.tokens.start("grant-1", "read")
        await rig.tokens.get_token("transact")
        stolen = rig.wire.forms[-1]["refresh_token"]  # already spent by us
        family = next(iter(rig.issuer.families.values()))
        family.spent.add(stolen)
        async with httpx.AsyncClient(transport=rig.wire) as http:
            thief = IssuerClient(http, issuer=ISSUER, client_id="orchestrator", key=CLIENT_KEY, sleep=_no_sleep)
            with pytest.raises(GrantRevoked):
                await thief.refresh(stolen, "read")
        with pytest.raises(AuthorizationLost):
            await rig.tokens.get_token("transact")


async def test_invalid_scope_refuses_that_tool_but_keeps_the_session(rig: Rig) -> None:
    issuer = StandInIssuer(grant_scope="read")
    wire = Wire(issuer.app)
    async with httpx.AsyncClient(transport=wire) as http:
        tokens = TokenManager(IssuerClient(http, issuer=ISSUER, client_id="orchestrator", key=CLIENT_KEY))
        await tokens.start("grant-1", "read")
        with pytest.raises(ToolRefused, match="payments"):
            await tokens.get_token("transact")
        assert tokens.lost is None
        assert await tokens.get_token("read")


async def test_invalidate_forces_one_refresh_but_not_when_already_replaced(rig: Rig) -> None:
    with freeze_time("2026-03-01 09:00:00", real_asyncio=True):
        await rig.tokens.start("grant-1", "read")
        old = await rig.tokens.get_token("read")
        rig.tokens.invalidate("read", old)
        new = await rig.tokens.get_token("read")
        assert new != old
        rig.tokens.invalidate("read", old)  # a late 401 for the old token must not drop the new one
        assert await rig.tokens.get_token("read") == new
    assert len(rig.wire.grants("read")) == 2


async def test_revoke_at_call_end_revokes_the_family_and_ends_the_session(rig: Rig) -> None:
    with freeze_time("2026-03-01 09:00:00", real_asyncio=True):
        await rig.tokens.start("grant-1", "read")
        await rig.tokens.get_token("configure")
        assert await rig.tokens.revoke() is True
        assert next(iter(rig.issuer.families.values())).revoked
        with pytest.raises(SessionEnded):
            await rig.tokens.get_token("read")
        assert await rig.tokens.revoke() is True  # twice is harmless and does not call the issuer
    assert len([f for f in rig.wire.forms if "token" in f]) == 1


async def test_revoke_with_the_issuer_down_reports_false_and_still_ends_the_session(rig: Rig) -> None:
    await rig.tokens.start("grant-1", "read")
    rig.wire.down = True
    assert await rig.tokens.revoke() is False
    with pytest.raises(AuthorizationLost):
        await rig.tokens.get_token("read")


async def test_a_spent_session_grant_is_refused(rig: Rig) -> None:
    await rig.tokens.start("grant-1", "read")
    async with httpx.AsyncClient(transport=rig.wire) as http:
        again = TokenManager(IssuerClient(http, issuer=ISSUER, client_id="orchestrator", key=CLIENT_KEY))
        with pytest.raises(AuthorizationLost):
            await again.start("grant-1", "read")
    with pytest.raises(RuntimeError):
        await rig.tokens.start("grant-1", "read")
