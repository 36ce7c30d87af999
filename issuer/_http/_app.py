"""The issuer FastAPI app: discovery, JWKS, `/token`, `/sessions`, `/revoke`, approvals, admin, health."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import TracerProvider as AnyTracerProvider
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from issuer._audit import Decision
from issuer._build import build_state, reload_registry
from issuer._endpoints._admin import ADMIN_SCOPE, retire_algorithm, revoke_key, ring_view, rotate_keys
from issuer._endpoints._ciba import (
    APPROVALS_SCOPE,
    BC_AUTHORIZE_PATH,
    bc_authorize,
    decide_approval,
    list_approvals,
)
from issuer._endpoints._discovery import JWKS_PATH, METADATA_PATH, etag_matches, jwks_document, metadata
from issuer._endpoints._revocations import REVOKE_SCOPE, revoke_families
from issuer._endpoints._revoke import revoke_token
from issuer._endpoints._sessions import create_session
from issuer._endpoints._token import token_response
from issuer._http._body import read_body, read_form, read_json_object
from issuer._http._handlers import NO_STORE, install_error_handlers
from issuer._http._routes import route_template
from issuer._http._timing import RequestTiming
from issuer._http._tracing import ServerSpans
from issuer._metrics import IssuerMetrics
from issuer._settings import IssuerSettings
from issuer._signing._rotation import Sleep
from issuer._state import IssuerState
from keys import idempotent

SESSIONS_SCOPE = "sessions:create"

Endpoint = Callable[[Request], Awaitable[Response]]


def issuer_state(app: FastAPI) -> IssuerState:
    """The running app's state (only between lifespan startup and shutdown)."""
    state: IssuerState = app.state.issuer
    return state


def metrics_app(app: FastAPI) -> Starlette:
    """`GET /metrics` of `app`, for a loopback listener of its own (never the public port)."""
    metrics: IssuerMetrics = app.state.metrics
    return metrics.app()


def reload_clients(app: FastAPI) -> bool:
    """SIGHUP: re-read the clients file; False (and the old registry kept) when it does not load."""
    state: IssuerState | None = getattr(app.state, "issuer", None)
    if state is None:
        return False  # not serving yet: the lifespan reads the file when it starts
    return reload_registry(state)


def _state(request: Request) -> IssuerState:
    return issuer_state(request.app)


def _decision(request: Request, event: str) -> Decision:
    """The audit record of this request: endpoints fill it, and the error handler writes refusals."""
    decision = Decision(event)
    request.state.audit = decision
    return decision


async def _guarded(request: Request, event: str, scope: str) -> tuple[IssuerState, Decision]:
    """The state and audit record of a request to a bearer-guarded endpoint that passed its guard."""
    decision = _decision(request, event)
    state = _state(request)
    await state.bearer.require(request.headers.get("authorization"), scope, decision)
    return state, decision


def _answer(
    state: IssuerState,
    decision: Decision,
    body: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A successful answer, once its decision is in the audit log."""
    state.audit.decided(decision)
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **(headers or {})})


def create_app(
    settings: IssuerSettings,
    *,
    clock: Callable[[], float] = time.time,
    rotation_sleep: Sleep = asyncio.sleep,
    http_transport: httpx.AsyncBaseTransport | None = None,
    tracer_provider: AnyTracerProvider | None = None,
) -> FastAPI:
    """A fresh issuer app; its key store, stores and clients are made in the lifespan.

    Its metrics are not served here: `metrics_app(app)` serves them on a listener of their own.
    Without a `tracer_provider` the app still starts a trace per request (so audit lines carry a
    trace id) and exports nothing; the entry point passes one that exports over OTLP when configured.
    """
    metrics = IssuerMetrics(clock=clock)

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
    app.add_middleware(RequestTiming)
    app.add_middleware(
        ServerSpans,
        tracer_provider=tracer_provider or TracerProvider(),
        route=lambda scope: route_template(app.router.routes, scope),
    )
    limit = settings.max_body_bytes

    def route(path: str, method: str) -> Callable[[Endpoint], Endpoint]:
        """A plain Starlette route: every handler reads its own request, so FastAPI's per-request
        dependency solving and validation would be pure cost (measured: ~30 us a request)."""

        def add(endpoint: Endpoint) -> Endpoint:
            app.add_route(path, endpoint, methods=[method])
            return endpoint

        return add

    # The same max-age the rotation timing assumes (`rotation_policy`): a next key is published twice as long.
    jwks_cache_control = f"public, max-age={settings.jwks_max_age}"

    @route(JWKS_PATH, "GET")
    async def jwks(request: Request) -> Response:
        body, etag = jwks_document(await _state(request).store.current())
        headers = {"Cache-Control": jwks_cache_control, "ETag": etag}
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    @route(METADATA_PATH, "GET")
    async def discovery(_request: Request) -> JSONResponse:
        return JSONResponse(metadata(settings), headers={"Cache-Control": "public, max-age=3600"})

    @route("/token", "POST")
    async def token(request: Request) -> Response:
        decision = _decision(request, "token")
        state = _state(request)
        form = await read_form(request, limit)
        answer = await token_response(
            state, form, request.headers.get("authorization"), decision, request.headers.getlist("dpop")
        )
        state.audit.decided(decision)
        # A token answer holds strings and integers only, which orjson writes byte for byte as JSONResponse
        # does (compact, UTF-8), three times faster.
        headers = {**NO_STORE, **await state.dpop.nonce_headers()}
        return Response(orjson.dumps(answer), media_type="application/json", headers=headers)

    @route("/revoke", "POST")
    async def revoke(request: Request) -> Response:
        decision = _decision(request, "revoke")
        state = _state(request)
        form = await read_form(request, limit)
        await revoke_token(state, form, request.headers.get("authorization"), decision)
        state.audit.decided(decision)
        return Response(status_code=200, headers=NO_STORE)

    @route("/sessions", "POST")
    async def sessions(request: Request) -> JSONResponse:
        state, decision = await _guarded(request, "sessions.create", SESSIONS_SCOPE)
        body = await read_json_object(request, limit)
        return _answer(state, decision, await create_session(state, body, decision), status=201)

    @route(BC_AUTHORIZE_PATH, "POST")
    async def backchannel_authorize(request: Request) -> JSONResponse:
        decision = _decision(request, "bc_authorize")
        state = _state(request)
        form = await read_form(request, limit)
        answer = await bc_authorize(
            state, form, request.headers.get("authorization"), decision, request.headers.getlist("dpop")
        )
        return _answer(state, decision, answer, headers=await state.dpop.nonce_headers())

    @route("/approvals", "GET")
    async def approvals(request: Request) -> JSONResponse:
        state, decision = await _guarded(request, "approvals.list", APPROVALS_SCOPE)
        users = request.query_params.getlist("user_id")
        user_id = users[0] if len(users) == 1 else None
        return _answer(state, decision, await list_approvals(state, user_id, decision))

    @route("/approvals/{auth_req_id}", "POST")
    async def decide(request: Request) -> JSONResponse:
        auth_req_id: str = request.path_params["auth_req_id"]
        state, decision = await _guarded(request, "approvals.decide", APPROVALS_SCOPE)
        body = await read_json_object(request, limit)
        return _answer(state, decision, await decide_approval(state, auth_req_id, body, decision))

    @route("/admin/keys", "GET")
    async def admin_keys(request: Request) -> JSONResponse:
        state, decision = await _guarded(request, "admin.keys.list", ADMIN_SCOPE)
        return _answer(state, decision, ring_view(await state.store.current()))

    @route("/admin/keys/rotate", "POST")
    async def admin_rotate(request: Request) -> JSONResponse:
        state, decision = await _guarded(request, "admin.keys.rotate", ADMIN_SCOPE)
        body = await read_json_object(request, limit, optional=True)
        return _answer(state, decision, await rotate_keys(state, body, decision))

    @route("/admin/keys/retire", "POST")
    async def admin_retire(request: Request) -> JSONResponse:
        state, decision = await _guarded(request, "admin.keys.retire", ADMIN_SCOPE)
        body = await read_json_object(request, limit)
        return _answer(state, decision, await retire_algorithm(state, body, decision))

    @route("/admin/keys/{kid}/revoke", "POST")
    async def admin_revoke(request: Request) -> JSONResponse:
        kid: str = request.path_params["kid"]
        state, decision = await _guarded(request, "admin.keys.revoke", ADMIN_SCOPE)
        await read_body(request, limit)
        return _answer(state, decision, await revoke_key(state, kid, decision))

    @route("/admin/revocations", "POST")
    async def admin_revocations(request: Request) -> JSONResponse:
        state, decision = await _guarded(request, "admin.revocations", REVOKE_SCOPE)
        body = await read_json_object(request, limit)
        return _answer(state, decision, await revoke_families(state, body, decision))

    @route("/healthz", "GET")
    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @route("/readyz", "GET")
    async def readyz(request: Request) -> JSONResponse:
        state = _state(request)
        try:
            if state.redis is not None:
                await idempotent(state.redis, state.redis.ping)
            await state.store.current()
            await state.refresh.ping()
        except Exception as exc:
            # Readiness reports any store failure as "not ready" instead of failing the probe.
            return JSONResponse({"status": "unavailable", "reason": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ready"})

    return app
