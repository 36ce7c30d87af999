"""The issuer FastAPI app: discovery, JWKS, `/token`, `/sessions`, `/revoke`, admin keys, health."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from issuer._build import build_state
from issuer._endpoints._admin import ADMIN_SCOPE, revoke_key, ring_view, rotate_keys
from issuer._endpoints._discovery import JWKS_PATH, METADATA_PATH, etag_matches, jwks_document, metadata
from issuer._endpoints._revoke import revoke_token
from issuer._endpoints._sessions import create_session
from issuer._endpoints._token import token_response
from issuer._http._body import read_body, read_form, read_json_object
from issuer._http._handlers import NO_STORE, install_error_handlers
from issuer._metrics import IssuerMetrics
from issuer._settings import IssuerSettings
from issuer._signing._rotation import Sleep
from issuer._state import IssuerState

SESSIONS_SCOPE = "sessions:create"


def issuer_state(app: FastAPI) -> IssuerState:
    """The running app's state (only between lifespan startup and shutdown)."""
    state: IssuerState = app.state.issuer
    return state


def metrics_app(app: FastAPI) -> Starlette:
    """`GET /metrics` of `app`, for a loopback listener of its own (never the public port)."""
    metrics: IssuerMetrics = app.state.metrics
    return metrics.app()


def _state(request: Request) -> IssuerState:
    return issuer_state(request.app)


def create_app(
    settings: IssuerSettings,
    *,
    clock: Callable[[], float] = time.time,
    rotation_sleep: Sleep = asyncio.sleep,
    http_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """A fresh issuer app; its key store, stores and clients are made in the lifespan.

    Its metrics are not served here: `metrics_app(app)` serves them on a listener of their own.
    """
    metrics = IssuerMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            state = await build_state(
                settings,
                stack,
                clock=clock,
                rotation_sleep=rotation_sleep,
                metrics=metrics,
                http_transport=http_transport,
            )
            app.state.issuer = state
            rotation = asyncio.create_task(state.rotation.run(), name="issuer-key-rotation")
            try:
                yield
            finally:
                rotation.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await rotation
                del app.state.issuer

    app = FastAPI(
        title="voicebank issuer", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.metrics = metrics
    install_error_handlers(app)
    limit = settings.max_body_bytes
    # The same max-age the rotation timing assumes (`rotation_policy`): a next key is published twice as long.
    jwks_cache_control = f"public, max-age={settings.jwks_max_age}"

    @app.get(JWKS_PATH)
    async def jwks(request: Request) -> Response:
        body, etag = jwks_document(await _state(request).store.current())
        headers = {"Cache-Control": jwks_cache_control, "ETag": etag}
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    @app.get(METADATA_PATH)
    async def discovery() -> JSONResponse:
        return JSONResponse(metadata(settings), headers={"Cache-Control": "public, max-age=3600"})

    @app.post("/token")
    async def token(request: Request) -> JSONResponse:
        state = _state(request)
        form = await read_form(request, limit)
        answer = await token_response(
            state, form, request.headers.get("authorization"), request.headers.getlist("dpop")
        )
        return JSONResponse(answer, headers={**NO_STORE, **await state.dpop.nonce_headers()})

    @app.post("/revoke")
    async def revoke(request: Request) -> Response:
        form = await read_form(request, limit)
        await revoke_token(_state(request), form, request.headers.get("authorization"))
        return Response(status_code=200, headers=NO_STORE)

    @app.post("/sessions")
    async def sessions(request: Request) -> JSONResponse:
        state = _state(request)
        await state.bearer.require(request.headers.get("authorization"), SESSIONS_SCOPE)
        body = await read_json_object(request, limit)
        return JSONResponse(await create_session(state, body), status_code=201, headers=NO_STORE)

    @app.get("/admin/keys")
    async def admin_keys(request: Request) -> JSONResponse:
        state = _state(request)
        await state.bearer.require(request.headers.get("authorization"), ADMIN_SCOPE)
        return JSONResponse(ring_view(await state.store.current()), headers=NO_STORE)

    @app.post("/admin/keys/rotate")
    async def admin_rotate(request: Request) -> JSONResponse:
        state = _state(request)
        claims = await state.bearer.require(request.headers.get("authorization"), ADMIN_SCOPE)
        body = await read_json_object(request, limit, optional=True)
        return JSONResponse(await rotate_keys(state, body, claims["sub"]), headers=NO_STORE)

    @app.post("/admin/keys/{kid}/revoke")
    async def admin_revoke(request: Request, kid: str) -> JSONResponse:
        state = _state(request)
        claims = await state.bearer.require(request.headers.get("authorization"), ADMIN_SCOPE)
        await read_body(request, limit)
        return JSONResponse(await revoke_key(state, kid, claims["sub"]), headers=NO_STORE)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        state = _state(request)
        try:
            if state.redis is not None:
                await state.redis.ping()
            await state.store.current()
            await state.refresh.ping()
        except Exception as exc:
            # Readiness reports any store failure as "not ready" instead of failing the probe.
            return JSONResponse({"status": "unavailable", "reason": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ready"})

    return app
