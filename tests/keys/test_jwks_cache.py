"""The JWKS cache against a real HTTP issuer (Starlette through httpx.ASGITransport) and a fake clock."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import keys
from keys import (
    JWKSCache,
    KeyPair,
    KeysUnavailable,
    UnknownKey,
    Verifier,
    VerifyPolicy,
)
from keys._verify._jwks_cache import cache_lifetime
from tests.support.clock import FakeClock

URL = "http://issuer.test/.well-known/jwks.json"
ISSUER = "http://127.0.0.1:8000"
AUDIENCE = "http://127.0.0.1:8001/mcp"
T0 = 1_700_000_000.0


class FakeIssuer:
    """A real ASGI JWKS endpoint whose answers the test controls; `down` refuses connections."""

    def __init__(self, pairs: list[KeyPair]) -> None:
        self.pairs = list(pairs)
        self.status = 200
        self.cache_control: str | None = "public, max-age=300"
        self.etag: str | None = '"v1"'
        self.body: bytes | None = None  # overrides the JWKS when set
        self.down = False
        self.requests: list[dict[str, str]] = []
        self.app = Starlette(routes=[Route("/.well-known/jwks.json", self.jwks)])

    async def jwks(self, request: Request) -> Response:
        self.requests.append(dict(request.headers))
        headers = {"cache-control": self.cache_control} if self.cache_control is not None else {}
        if self.etag is not None:
            headers["etag"] = self.etag
            if request.headers.get("if-none-match") == self.etag and self.body is None:
                return Response(status_code=304, headers=headers)
        body = self.body
        if body is None:
            body = json.dumps({"keys": [p.public_jwk() for p in self.pairs]}).encode()
        return Response(body, status_code=self.status, headers=headers, media_type="application/json")

    def publish(self, pairs: list[KeyPair], etag: str) -> None:
        self.pairs = list(pairs)
        self.etag = etag


class SwitchableTransport(httpx.AsyncBaseTransport):
    """The issuer's real ASGI app, or a refused connection while the issuer is down."""

    def __init__(self, issuer: FakeIssuer) -> None:
        self.issuer = issuer
        self.inner = httpx.ASGITransport(app=issuer.app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.issuer.down:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


@pytest.fixture(scope="module")
def pairs() -> list[KeyPair]:
    return [keys.generate_key("ES256"), keys.generate_key("EdDSA"), keys.generate_key("ES256")]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def issuer(pairs: list[KeyPair]) -> FakeIssuer:
    return FakeIssuer(pairs[:2])


@pytest.fixture
async def client(issuer: FakeIssuer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=SwitchableTransport(issuer)) as http:
        yield http


@pytest.fixture
async def cache(client: httpx.AsyncClient, clock: FakeClock) -> AsyncIterator[JWKSCache]:
    jwks = JWKSCache(URL, client, clock=clock)
    yield jwks
    await jwks.aclose()


def verifier_for(cache: JWKSCache, clock: FakeClock) -> Verifier:
    return Verifier(cache, VerifyPolicy(ISSUER, AUDIENCE), clock=clock)


def token(pair: KeyPair, clock: FakeClock, **header_kid: str) -> str:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "jti": "j", "iat": clock(), "exp": clock() + 60}
    if not header_kid:
        return keys.sign(claims, pair, typ="at+jwt")
    # Same key, another kid: exercises unknown-kid handling without generating keys.
    forged = KeyPair(pair.private_key, pair.alg, header_kid["kid"])
    return keys.sign(claims, forged, typ="at+jwt")


# --- Cache-Control ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, 300),
        ("public, max-age=120", 120),
        ("max-age=5", 30),
        ("max-age=99999999", 3600),
        ("max-age=99999999999999999999999", 300),
        ('max-age="600"', 600),
        ("no-store", 30),
        ("public, no-cache, max-age=600", 30),
        ("max-age=abc", 300),
        ("max-age=-5", 300),
        ("max-age=²", 300),
        ("private", 300),
        ("", 300),
    ],
)
def test_cache_lifetime_is_clamped(header: str | None, seconds: int) -> None:
    assert cache_lifetime(header, default=300, low=30, high=3600) == seconds


async def test_first_refresh_loads_keys(cache: JWKSCache, pairs: list[KeyPair], issuer: FakeIssuer) -> None:
    await cache.refresh()
    assert cache.fetch_count == 1
    assert cache.kids == {pairs[0].kid, pairs[1].kid}
    key = cache.get(pairs[0].kid)
    assert key is not None
    assert key.alg == "ES256"
    assert cache.get(pairs[2].kid) is None
    assert "if-none-match" not in issuer.requests[0]


@pytest.mark.parametrize(("header", "lifetime"), [("max-age=100", 100), ("max-age=1", 30), ("no-store", 30)])
async def test_max_age_decides_when_refresh_starts(
    cache: JWKSCache, issuer: FakeIssuer, clock: FakeClock, pairs: list[KeyPair], header: str, lifetime: int
) -> None:
    issuer.cache_control = header
    await cache.refresh()
    clock.now = T0 + 0.8 * lifetime - 0.01
    assert cache.get(pairs[0].kid) is not None
    await cache.wait_refresh()
    assert cache.fetch_count == 1
    clock.now = T0 + 0.8 * lifetime
    assert cache.get(pairs[0].kid) is not None  # served at once; the refresh runs in the background
    await cache.wait_refresh()
    assert cache.fetch_count == 2


async def test_huge_max_age_is_capped(cache: JWKSCache, issuer: FakeIssuer, clock: FakeClock) -> None:
    issuer.cache_control = "max-age=31536000"
    await cache.refresh()
    clock.now = T0 + 0.8 * 3600
    cache.get("any")
    await cache.wait_refresh()
    assert cache.fetch_count == 2


async def test_etag_and_304_keep_keys_and_extend_freshness(
    cache: JWKSCache, issuer: FakeIssuer, clock: FakeClock, pairs: list[KeyPair]
) -> None:
    await cache.refresh()
    clock.now = T0 + 1000
    await cache.refresh()
    assert issuer.requests[-1]["if-none-match"] == '"v1"'
    assert cache.fetch_count == 2
    assert cache.kids == {pairs[0].kid, pairs[1].kid}
    # Fresh again from T0 + 1000: no refresh due before T0 + 1000 + 240.
    clock.now = T0 + 1000 + 239
    cache.get(pairs[0].kid)
    await cache.wait_refresh()
    assert cache.fetch_count == 2


async def test_refresh_ahead_picks_up_a_new_key(
    cache: JWKSCache, issuer: FakeIssuer, clock: FakeClock, pairs: list[KeyPair]
) -> None:
    verifier = verifier_for(cache, clock)
    await cache.refresh()
    issuer.publish(pairs, '"v2"')
    clock.now = T0 + 240
    assert verifier.verify(token(pairs[0], clock))["sub"] == "alice"
    await cache.wait_refresh()
    assert verifier.verify(token(pairs[2], clock))["sub"] == "alice"
    assert cache.fetch_count == 2


async def test_refresh_is_single_flight(cache: JWKSCache) -> None:
    await asyncio.gather(*(cache.refresh() for _ in range(10)))
    assert cache.fetch_count == 1


# --- unknown kids -----------------------------------------------------------------------------------


async def test_unknown_kid_flood_fetches_once_per_interval(
    cache: JWKSCache, clock: FakeClock, pairs: list[KeyPair]
) -> None:
    verifier = verifier_for(cache, clock)
    await cache.refresh()
    rng = random.Random(7)
    flood = [token(pairs[0], clock, kid=f"{rng.getrandbits(128):032x}") for _ in range(100)]
    results = await asyncio.gather(*(verifier.verify_async(t) for t in flood), return_exceptions=True)
    assert all(isinstance(r, UnknownKey) for r in results)
    assert cache.fetch_count == 1  # the load a moment ago counts: no refetch within the interval
    clock.now = T0 + 5.0
    results = await asyncio.gather(*(verifier.verify_async(t) for t in flood), return_exceptions=True)
    assert all(isinstance(r, UnknownKey) for r in results)
    assert cache.fetch_count == 2
    clock.now = T0 + 9.9
    await asyncio.gather(*(verifier.verify_async(t) for t in flood), return_exceptions=True)
    assert cache.fetch_count == 2
    clock.now = T0 + 10.0
    await asyncio.gather(*(verifier.verify_async(t) for t in flood), return_exceptions=True)
    assert cache.fetch_count == 3


async def test_unknown_kid_flood_before_first_load_is_one_fetch(
    cache: JWKSCache, clock: FakeClock, pairs: list[KeyPair]
) -> None:
    verifier = verifier_for(cache, clock)
    tokens = [token(pairs[0], clock)] * 50 + [token(pairs[0], clock, kid=f"k{i}") for i in range(50)]
    results = await asyncio.gather(*(verifier.verify_async(t) for t in tokens), return_exceptions=True)
    assert cache.fetch_count == 1
    assert sum(isinstance(r, dict) for r in results) == 50
    assert sum(isinstance(r, UnknownKey) for r in results) == 50


async def test_new_kid_is_found_by_one_refetch(
    cache: JWKSCache, issuer: FakeIssuer, clock: FakeClock, pairs: list[KeyPair]
) -> None:
    verifier = verifier_for(cache, clock)
    await cache.refresh()
    issuer.publish(pairs, '"v2"')
    clock.now = T0 + 5
    new = token(pairs[2], clock)
    with pytest.raises(UnknownKey):
        verifier.verify(new)  # the sync path never goes to the network
    claims = await asyncio.gather(*(verifier.verify_async(new) for _ in range(20)))
    assert all(c["sub"] == "alice" for c in claims)
    assert cache.fetch_count == 2


async def test_sync_verify_before_any_load_is_unavailable(
    cache: JWKSCache, clock: FakeClock, pairs: list[KeyPair]
) -> None:
    verifier = verifier_for(cache, clock)
    with pytest.raises(KeysUnavailable):
        verifier.verify(token(pairs[0], clock))
    await cache.wait_refresh()  # the lookup started a background load
    assert verifier.verify(token(pairs[0], clock))["sub"] == "alice"


def test_get_outside_an_event_loop_does_not_fetch(clock: FakeClock, pairs: list[KeyPair]) -> None:
    cache = JWKSCache(URL, httpx.AsyncClient(transport=httpx.ASGITransport(app=Starlette())), clock=clock)
    with pytest.raises(KeysUnavailable):
        cache.get(pairs[0].kid)
    assert cache.fetch_count == 0


# --- issuer down or answering garbage ---------------------------------------------------------------


async def test_issuer_down_serves_known_keys_until_the_stale_limit(
    cache: JWKSCache,
    issuer: FakeIssuer,
    clock: FakeClock,
    pairs: list[KeyPair],
    caplog: pytest.LogCaptureFixture,
) -> None:
    verifier = verifier_for(cache, clock)
    await cache.refresh()
    issuer.down = True
    clock.now = T0 + 300 + 3600  # expired 3600 s ago: the last moment known keys are served
    assert (await verifier.verify_async(token(pairs[0], clock)))["sub"] == "alice"
    await cache.wait_refresh()
    assert cache.fetch_count == 2
    for _ in range(50):  # failing refreshes are rate-limited too
        verifier.verify(token(pairs[0], clock))
    await cache.wait_refresh()
    assert cache.fetch_count == 2
    with pytest.raises(KeysUnavailable):
        await cache.refresh()
    assert "ConnectError" in caplog.text
    clock.now = T0 + 300 + 3600.5
    with pytest.raises(KeysUnavailable):
        verifier.verify(token(pairs[0], clock))
    with pytest.raises(KeysUnavailable):
        await verifier.verify_async(token(pairs[0], clock))
    issuer.down = False
    clock.now += 5
    assert (await verifier.verify_async(token(pairs[0], clock)))["sub"] == "alice"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, None),
        (404, None),
        (200, b"<html>oops</html>"),
        (200, b'{"keys": "nope"}'),
        (200, b"[]"),
        (200, b"[" * 100_000),
        (200, b'{"keys": [' + b"1," * 200_000 + b"1]}"),  # over max_body
    ],
)
async def test_garbage_answers_keep_known_keys(
    cache: JWKSCache,
    issuer: FakeIssuer,
    clock: FakeClock,
    pairs: list[KeyPair],
    status: int,
    body: bytes | None,
) -> None:
    await cache.refresh()
    issuer.status, issuer.body = status, body if body is not None else b"{}"
    clock.now = T0 + 400
    with pytest.raises(KeysUnavailable):
        await cache.refresh()
    assert cache.get(pairs[0].kid) is not None
    await cache.wait_refresh()


async def test_declared_oversized_body_is_not_read(issuer: FakeIssuer, clock: FakeClock) -> None:
    issuer.body = b'{"keys": []}' + b" " * 5000
    async with httpx.AsyncClient(transport=SwitchableTransport(issuer)) as http:
        small = JWKSCache(URL, http, clock=clock, max_body=1000)
        with pytest.raises(KeysUnavailable):
            await small.refresh()


async def test_304_without_a_cached_copy_is_garbage(cache: JWKSCache, issuer: FakeIssuer) -> None:
    issuer.status, issuer.body = 304, b""
    with pytest.raises(KeysUnavailable):
        await cache.refresh()


async def test_bad_entries_are_skipped_and_logged_by_kid_only(
    cache: JWKSCache, issuer: FakeIssuer, pairs: list[KeyPair], caplog: pytest.LogCaptureFixture
) -> None:
    good = pairs[0].public_jwk()
    private = {**pairs[1].public_jwk(), "d": "c2VjcmV0LWQtdmFsdWU", "kid": "has-private"}
    entries: list[Any] = [
        good,
        private,
        {"kty": "oct", "k": "c2VjcmV0LWstdmFsdWU", "kid": "symmetric"},
        {**pairs[2].public_jwk(), "use": "enc", "kid": "for-encryption"},
        {**pairs[2].public_jwk(), "x": "AAAA", "kid": "off-curve"},
        {**pairs[2].public_jwk(), "alg": "RS256", "kid": "alg-mismatch"},
        {**good},  # the same kid twice
        "not an object",
        {"kid": ["weird"]},
    ]
    issuer.body = json.dumps({"keys": entries}).encode()
    with caplog.at_level(logging.WARNING):
        await cache.refresh()
    assert cache.kids == {pairs[0].kid}
    for kid in ("has-private", "symmetric", "for-encryption", "off-curve", "alg-mismatch"):
        assert kid in caplog.text
    assert "c2VjcmV0" not in caplog.text


async def test_empty_jwks_is_a_valid_answer(
    cache: JWKSCache, issuer: FakeIssuer, pairs: list[KeyPair]
) -> None:
    await cache.refresh()
    issuer.publish([], '"empty"')
    await cache.refresh()
    assert cache.kids == frozenset()


# --- revocation -------------------------------------------------------------------------------------


async def test_drop_refuses_a_key_until_the_jwks_stops_listing_it(
    cache: JWKSCache, issuer: FakeIssuer, clock: FakeClock, pairs: list[KeyPair]
) -> None:
    verifier = verifier_for(cache, clock)
    await cache.refresh()
    revoked = token(pairs[1], clock)
    assert verifier.verify(revoked)
    cache.drop(pairs[1].kid)
    with pytest.raises(UnknownKey):
        verifier.verify(revoked)
    # A refetch while the (stale) JWKS still lists the key does not bring it back.
    issuer.etag = None
    clock.now = T0 + 10
    with pytest.raises(UnknownKey):
        await verifier.verify_async(revoked)
    assert cache.fetch_count == 2
    assert pairs[1].kid not in cache.kids
    # Once the JWKS no longer lists it, the revocation is forgotten (a republished kid is the issuer's call).
    issuer.pairs = [pairs[0]]
    await cache.refresh()
    issuer.pairs = [pairs[0], pairs[1]]
    await cache.refresh()
    assert pairs[1].kid in cache.kids


async def test_drop_of_a_kid_not_yet_fetched(
    cache: JWKSCache, issuer: FakeIssuer, pairs: list[KeyPair]
) -> None:
    cache.drop(pairs[0].kid)
    await cache.refresh()
    assert cache.kids == {pairs[1].kid}


async def test_aclose_cancels_a_fetch_in_flight(cache: JWKSCache) -> None:
    task = asyncio.ensure_future(cache.refresh())
    await asyncio.sleep(0)  # let refresh() start the fetch task
    await cache.aclose()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_constructor_validates_bounds(clock: FakeClock) -> None:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=Starlette()))
    with pytest.raises(ValueError, match="max_age"):
        JWKSCache(URL, client, min_max_age=100, max_max_age=10)
    with pytest.raises(ValueError, match="refetch_interval"):
        JWKSCache(URL, client, refetch_interval=-1)


async def test_no_kid_asks_for_the_only_key(
    cache: JWKSCache, issuer: FakeIssuer, clock: FakeClock, pairs: list[KeyPair]
) -> None:
    # Two keys published: a kid-less lookup finds none (one fetch, for the first load), never a guess.
    assert await cache.fetch_unknown(None) is None
    assert cache.get(None) is None
    assert cache.fetch_count == 1
    issuer.publish([pairs[0]], '"v2"')
    clock.now = T0 + 10  # past the refetch interval: the next kid-less miss refetches
    only = await cache.fetch_unknown(None)
    assert only is not None
    assert only.kid == pairs[0].kid
    assert cache.get(None) is only
    assert cache.fetch_count == 2
    cache.drop(pairs[0].kid)
    assert cache.get(None) is None
