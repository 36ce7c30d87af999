"""The production wiring: keys from the issuer's JWKS (`voicebank up` serves it, with our logging)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from sqlalchemy import Engine
from starlette.applications import Starlette

from keys import JWKSCache, KeysUnavailable, Verifier, VerifyPolicy
from mcp_server._app import create_app
from mcp_server._settings import McpSettings

_log = logging.getLogger("voicebank.mcp")

# RFC 9068 claims the MCP server needs on top of the verifier's always-required iss, aud, exp, iat.
ACCESS_TOKEN_CLAIMS = frozenset({"sub", "jti", "client_id", "scope"})


def access_token_policy(settings: McpSettings) -> VerifyPolicy:
    """What an access token for this resource must meet: `at+jwt`, exact issuer, our audience."""
    return VerifyPolicy(
        issuer=settings.mcp_issuer_url,
        audience=settings.mcp_resource_url,
        typ="at+jwt",
        required=ACCESS_TOKEN_CLAIMS,
    )


def build_app_from_settings(
    settings: McpSettings,
    *,
    clock: Callable[[], float] = time.time,
    http_client: httpx.AsyncClient | None = None,
    engine: Engine | None = None,
) -> Starlette:
    """The production app: JWKS from the issuer through `keys.JWKSCache`, verified by `keys.Verifier`.

    `http_client` (for example one with `httpx.ASGITransport` to an in-process issuer) is borrowed,
    not closed; by default the app makes its own and closes it on shutdown.
    """
    client = http_client or httpx.AsyncClient(timeout=httpx.Timeout(5.0))
    cache = JWKSCache(settings.jwks_url, client, clock=clock)
    verifier = Verifier(cache, access_token_policy(settings), clock=clock)

    @asynccontextmanager
    async def jwks() -> AsyncIterator[None]:
        try:
            try:
                await cache.refresh()
            except KeysUnavailable:
                # Not fatal: the cache fetches again on the first unknown kid.
                _log.warning("issuer JWKS not reachable at startup; will retry on demand")
            yield
        finally:
            await cache.aclose()
            if http_client is None:
                await client.aclose()

    return create_app(
        settings, verifier=verifier, key_cache=cache, engine=engine, clock=clock, lifespan_hook=jwks
    )
