"""The production wiring: keys from the issuer's JWKS (`voicebank up` serves it, with our logging)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from opentelemetry.trace import TracerProvider
from sqlalchemy import Engine
from starlette.applications import Starlette

from keys import JWKSCache, Verifier, VerifyPolicy
from mcp_server._app import create_app
from mcp_server._auth._jwks_loader import JwksLoader, Sleep
from mcp_server._settings import McpSettings

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
    jwks_retry_sleep: Sleep = asyncio.sleep,
    tracer_provider: TracerProvider | None = None,
) -> Starlette:
    """The production app: JWKS from the issuer through `keys.JWKSCache`, verified by `keys.Verifier`.

    `http_client` (for example one with `httpx.ASGITransport` to an in-process issuer) is borrowed,
    not closed; by default the app makes its own and closes it on shutdown. `jwks_retry_sleep` waits
    between the first JWKS fetch's retries (injected like the clock). `app.state.jwks_loader` is the
    loader, whose `loaded` event is set once the keys are in.
    """
    client = http_client or httpx.AsyncClient(timeout=httpx.Timeout(5.0))
    cache = JWKSCache(settings.jwks_url, client, clock=clock)
    verifier = Verifier(cache, access_token_policy(settings), clock=clock)
    loader = JwksLoader(cache, sleep=jwks_retry_sleep)

    @asynccontextmanager
    async def jwks() -> AsyncIterator[None]:
        task = asyncio.create_task(loader.run(), name="voicebank-jwks-load")
        try:
            # Start serving after the first try, whatever it gave: until the keys are in, /readyz says 503
            # and requests get 503 temporarily_unavailable while the loader keeps trying.
            await loader.tried.wait()
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await cache.aclose()
            if http_client is None:
                await client.aclose()

    app = create_app(
        settings,
        verifier=verifier,
        key_cache=cache,
        engine=engine,
        clock=clock,
        lifespan_hook=jwks,
        keys_usable=lambda: cache.usable,
        tracer_provider=tracer_provider,
    )
    app.state.jwks_loader = loader
    return app
