"""A remote JWKS kept fresh within Cache-Control bounds, refetched on unknown kids at a bounded rate."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from keys._algorithms._verify_key import VerifyKey
from keys._clock import wall_clock
from keys._errors import KeyMaterialError, KeysError, KeysUnavailable
from keys._timing import DEFAULT_JWKS_MAX_AGE
from keys._verify._verifier import lookup

logger = logging.getLogger(__name__)


class _BadAnswer(KeysError):
    """The issuer answered, but not with a usable JWKS (the message names why, never the body)."""


def cache_lifetime(cache_control: str | None, *, default: int, low: int, high: int) -> int:
    """Seconds to keep a JWKS: `max-age` clamped to [low, high]; no-store/no-cache mean `low`."""
    if cache_control is None:
        return max(low, min(high, default))
    directives = [part.strip().lower() for part in cache_control.split(",")]
    if "no-store" in directives or "no-cache" in directives:
        return low
    for directive in directives:
        name, _, value = directive.partition("=")
        value = value.strip().strip('"')
        if name.strip() == "max-age" and value.isascii() and value.isdigit() and len(value) <= 10:
            return max(low, min(high, int(value)))
    return max(low, min(high, default))


def _safe_kid(entry: Any) -> str:
    kid = entry.get("kid") if isinstance(entry, Mapping) else None
    if isinstance(kid, str) and kid.isprintable():
        return kid[:64]
    return "<none>"


class JWKSCache:
    """The issuer's JWKS: `get` is a dict lookup; refreshes run as one shared asyncio task at a time.

    Keys are served until `max-age` (clamped) passes, refreshed in the background after `refresh_ahead`
    of it, and kept for `stale_limit` more seconds while the issuer is unreachable; after that every
    lookup raises KeysUnavailable. Past `max-age` with no failed fetch yet, `get` answers None so that
    `Verifier.verify_async` waits for the refetch: a key the issuer revoked is never trusted beyond its
    `max-age` while the issuer answers. Network attempts are at least `refetch_interval` apart, except an
    explicit `refresh()`.
    """

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = wall_clock,
        min_max_age: int = 30,
        max_max_age: int = 3600,
        default_max_age: int = DEFAULT_JWKS_MAX_AGE,
        refetch_interval: float = 5.0,
        refresh_ahead: float = 0.8,
        stale_limit: float = 3600,
        max_body: int = 256 * 1024,
    ) -> None:
        if not 0 < min_max_age <= max_max_age or not 0 < refresh_ahead <= 1:
            raise ValueError("need 0 < min_max_age <= max_max_age and 0 < refresh_ahead <= 1")
        if refetch_interval < 0 or stale_limit < 0 or max_body <= 0:
            raise ValueError("refetch_interval, stale_limit and max_body must not be negative")
        self._url = url
        self._client = client
        self._clock = clock
        self._min_max_age = min_max_age
        self._max_max_age = max_max_age
        self._default_max_age = default_max_age
        self._refetch_interval = refetch_interval
        self._refresh_ahead = refresh_ahead
        self._stale_limit = stale_limit
        self._max_body = max_body
        self.fetch_count = 0
        self.failure_count = 0
        self.fetched_at: float | None = None
        """When the keys last came from the issuer (a 200 or a 304), for the JWKS age metric."""
        self._keys: dict[str, VerifyKey] = {}
        self._revoked: set[str] = set()
        self._etag: str | None = None
        self._loaded = False
        self._expires_at = -math.inf
        self._refresh_at = -math.inf  # before this instant `get` is a plain dict lookup
        self._last_attempt = -math.inf
        self._failing = False  # the latest fetch failed: stale keys may be served (bounded)
        self._inflight: asyncio.Task[bool] | None = None

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    @property
    def usable(self) -> bool:
        """Keys were fetched and are not stale past the limit: a token can be checked (readiness)."""
        return self._usable(self._clock())

    def get(self, kid: str | None) -> VerifyKey | None:
        """The known key for `kid` (None: the only key); starts a background refresh when one is due."""
        now = self._clock()
        if now >= self._refresh_at:
            self._due(now)
        if not self._servable(now):
            return None  # past max-age: the async path waits for the refetch started above
        return lookup(self._keys, kid)

    async def fetch_unknown(self, kid: str | None) -> VerifyKey | None:
        """Refetch for an unknown kid, joining a fetch in flight and at most once per refetch interval."""
        now = self._clock()
        key = lookup(self._keys, kid)
        if key is not None and self._servable(now):
            return key
        if self._inflight is not None:
            await asyncio.shield(self._inflight)
        elif now >= self._last_attempt + self._refetch_interval:
            await asyncio.shield(self._start())
        if not self._usable(self._clock()):
            raise KeysUnavailable("issuer keys are unavailable")
        return lookup(self._keys, kid)

    async def refresh(self) -> None:
        """Fetch now (or join the fetch in flight); raise KeysUnavailable if that fetch failed."""
        task = self._inflight if self._inflight is not None else self._start()
        if not await asyncio.shield(task):
            raise KeysUnavailable("issuer keys could not be fetched")

    async def wait_refresh(self) -> None:
        """Wait for the fetch in flight, if any (shutdown, tests)."""
        if self._inflight is not None:
            await asyncio.shield(self._inflight)

    def drop(self, kid: str) -> None:
        """Forget a revoked key now; it stays refused until a fetched JWKS stops listing it."""
        self._keys.pop(kid, None)
        self._revoked.add(kid)

    async def aclose(self) -> None:
        """Cancel a fetch in flight."""
        task, self._inflight = self._inflight, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _usable(self, now: float) -> bool:
        return self._loaded and now <= self._expires_at + self._stale_limit

    def _servable(self, now: float) -> bool:
        """Cached keys may be used without a fetch: within max-age, or stale while fetches fail."""
        return self._loaded and (now <= self._expires_at or (self._failing and self._usable(now)))

    def _due(self, now: float) -> None:
        if self._inflight is None and now >= self._last_attempt + self._refetch_interval:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass  # no loop (a sync caller): the owner refreshes explicitly
            else:
                self._start()
        if not self._usable(now):
            raise KeysUnavailable("issuer keys are unavailable")

    def _start(self) -> asyncio.Task[bool]:
        self._last_attempt = self._clock()
        self.fetch_count += 1
        self._inflight = asyncio.get_running_loop().create_task(self._fetch(self._last_attempt))
        return self._inflight

    async def _fetch(self, started: float) -> bool:
        try:
            await self._request(started)
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, _BadAnswer) as exc:
            reason = str(exc) if isinstance(exc, _BadAnswer) else type(exc).__name__
            logger.warning("JWKS fetch from %s failed: %s", self._url, reason)
            self.failure_count += 1
            self._failing = True
            return False
        finally:
            if self._inflight is asyncio.current_task():
                self._inflight = None
        self._failing = False
        return True

    async def _request(self, started: float) -> None:
        headers = {"Accept": "application/jwk-set+json, application/json"}
        if self._loaded and self._etag is not None:
            headers["If-None-Match"] = self._etag
        async with self._client.stream("GET", self._url, headers=headers) as response:
            lifetime = cache_lifetime(
                response.headers.get("cache-control"),
                default=self._default_max_age,
                low=self._min_max_age,
                high=self._max_max_age,
            )
            if response.status_code == 304 and self._loaded:
                self._etag = response.headers.get("etag", self._etag)
                self._fresh_until(started, lifetime)
                return
            if response.status_code != 200:
                raise _BadAnswer(f"HTTP status {response.status_code}")
            body = await self._read(response)
            etag = response.headers.get("etag")
        keys = self._parse(body)
        self._revoked &= keys.keys()  # a revoked kid the issuer no longer lists needs no memory
        self._keys = {kid: key for kid, key in keys.items() if kid not in self._revoked}
        self._etag = etag
        self._loaded = True
        self._fresh_until(started, lifetime)

    async def _read(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self._max_body:
            raise _BadAnswer("JWKS body too large")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_body:
                raise _BadAnswer("JWKS body too large")
            chunks.append(chunk)
        return b"".join(chunks)

    def _parse(self, body: bytes) -> dict[str, VerifyKey]:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise _BadAnswer("JWKS body is not JSON") from None
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise _BadAnswer("JWKS has no keys list")
        keys: dict[str, VerifyKey] = {}
        for entry in entries:
            try:
                key = VerifyKey.from_jwk(entry)
            except (KeyMaterialError, TypeError, ValueError) as exc:
                # One bad entry must not cost the others; its kid is logged, its members never.
                reason = str(exc) if isinstance(exc, KeyMaterialError) else type(exc).__name__
                logger.warning("skipping JWKS key %s: %s", _safe_kid(entry), reason)
                continue
            if key.kid in keys:
                logger.warning("skipping JWKS key %s: kid listed twice", _safe_kid(entry))
                continue
            keys[key.kid] = key
        return keys

    def _fresh_until(self, started: float, lifetime: int) -> None:
        self.fetched_at = started
        self._expires_at = started + lifetime
        self._refresh_at = started + self._refresh_ahead * lifetime
