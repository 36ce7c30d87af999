"""The ASGI app: FastMCP at the resource path behind bearer auth, metadata and health."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio.to_thread
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import TracerProvider as AnyTracerProvider
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from keys import (
    DPoPVerifier,
    JWKSCache,
    MemoryNonces,
    MemoryReplayCache,
    NonceSource,
    ObservedReplayCache,
    RedisNonces,
    RedisReplayCache,
    ReplayCache,
    redis_client,
)
from mcp_server._audit import AuditLog
from mcp_server._auth._binding import CurrencyUnavailable
from mcp_server._auth._dpop import ResourceDPoP
from mcp_server._auth._key_events import KeyDropper, KeyEventSubscriber
from mcp_server._auth._metadata import WELL_KNOWN, ResourceMetadata, metadata_url, resource_path
from mcp_server._auth._middleware import BearerAuthMiddleware, TokenVerifier
from mcp_server._bank._db import bank_threads, create_schema, make_engine
from mcp_server._bank._service import Bank
from mcp_server._metrics import Metrics
from mcp_server._readiness import Readiness
from mcp_server._settings import McpSettings
from mcp_server._tools import BankTools, build_mcp
from mcp_server._tracing import ServerSpans

Hook = Callable[[], AbstractAsyncContextManager[None]]
# Spent transact `jti`s in Redis, shared by every MCP replica.
JTI_PREFIX = "voicebank:mcp:jti"
# The MCP servers' DPoP nonces in Redis, one per time window, shared by every replica.
DPOP_NONCE_PREFIX = "voicebank:dpop-nonce:mcp"


def create_app(
    settings: McpSettings,
    *,
    verifier: TokenVerifier,
    key_cache: KeyDropper | None = None,
    engine: Engine | None = None,
    replay: ReplayCache | None = None,
    clock: Callable[[], float] = time.time,
    lifespan_hook: Hook | None = None,
    keys_usable: Callable[[], bool] | None = None,
    tracer_provider: AnyTracerProvider | None = None,
) -> Starlette:
    """Build the MCP server app; the verifier (and the JWKS cache key events act on) come from outside.

    `keys_usable` tells `/readyz` whether the verifier has keys to check with (default: always, for a
    verifier with static keys). Without a `tracer_provider` requests still run in a trace (audit lines
    carry its id) and nothing is exported.
    """
    owns_engine = engine is None
    bank_engine = engine if engine is not None else make_engine(settings.database_url)
    # Each command is resent after a dropped connection only when that is safe (`keys.idempotent`).
    redis = redis_client(settings.redis_url) if settings.redis_url else None
    if replay is None:
        replay = (
            RedisReplayCache(redis, prefix=JTI_PREFIX, clock=clock)
            if redis
            else MemoryReplayCache(clock=clock)
        )
    audit = AuditLog(clock=clock)
    metrics = Metrics()
    replay = ObservedReplayCache(replay, metrics.observe_replay)
    nonces: NonceSource | None = None
    if settings.dpop_nonce == "required":
        nonces = (
            RedisNonces(redis, prefix=DPOP_NONCE_PREFIX, clock=clock) if redis else MemoryNonces(clock=clock)
        )
    # Proof jtis go to the same replay cache as transact jtis: every replica refuses a proof seen by another.
    dpop = ResourceDPoP(
        DPoPVerifier(replay, nonces=nonces, clock=clock, prefix="dpop:mcp"),
        resource_url=settings.mcp_resource_url,
        required=settings.require_dpop,
        nonces=nonces,
    )
    if isinstance(key_cache, JWKSCache):
        metrics.watch_jwks(key_cache, clock)
    bank = Bank(bank_engine, payment_limit_cents=settings.payment_limit_cents, clock=clock)
    tools = BankTools(bank, audit, metrics, threads=bank_threads(bank_engine))
    mcp_app = build_mcp(tools).http_app(
        path=resource_path(settings.mcp_resource_url),
        stateless_http=True,
        json_response=True,
        host_origin_protection=False,
    )
    subscriber = KeyEventSubscriber(redis, key_cache) if redis and key_cache else None
    metadata = ResourceMetadata(
        resource_url=settings.mcp_resource_url,
        issuer_url=settings.mcp_issuer_url,
        dpop_required=dpop.required,
        dpop_algorithms=dpop.algorithms,
    )
    readiness = Readiness(keys_usable=keys_usable or _always, engine=bank_engine, redis=redis)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        create_schema(bank_engine)
        async with contextlib.AsyncExitStack() as stack:
            if lifespan_hook is not None:
                await stack.enter_async_context(lifespan_hook())
            await stack.enter_async_context(mcp_app.router.lifespan_context(mcp_app))
            if redis is not None:
                stack.push_async_callback(redis.aclose)
            if subscriber is not None:
                task = asyncio.create_task(subscriber.run(), name="voicebank-key-events")
                stack.push_async_callback(_cancel, task)
            if owns_engine:
                stack.callback(bank_engine.dispose)
            yield

    async def currency_of(user_id: str, account_id: str) -> str | None:
        try:
            return await anyio.to_thread.run_sync(bank.account_currency, user_id, account_id)
        except SQLAlchemyError as exc:
            raise CurrencyUnavailable(type(exc).__name__) from exc

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    suffix = resource_path(settings.mcp_resource_url)
    auth = Middleware(
        BearerAuthMiddleware,
        path=suffix,
        verifier=verifier,
        replay=replay,
        resource_metadata_url=metadata_url(settings.mcp_resource_url),
        audit=audit,
        metrics=metrics,
        currency_of=currency_of,
        dpop=dpop,
        max_body_bytes=settings.mcp_max_body_bytes,
        allowed_origins=settings.mcp_allowed_origins,
    )
    app = Starlette(
        routes=[
            Route(WELL_KNOWN, metadata.endpoint, methods=["GET"]),
            Route(WELL_KNOWN + suffix, metadata.endpoint, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readiness.endpoint, methods=["GET"]),
            Mount("/", app=mcp_app),
        ],
        middleware=[
            Middleware(
                ServerSpans,
                tracer_provider=tracer_provider or TracerProvider(),
                paths={
                    suffix,
                    suffix.rstrip("/") + "/",
                    WELL_KNOWN,
                    WELL_KNOWN + suffix,
                    "/healthz",
                    "/metrics",
                },
            ),
            auth,
        ],
        lifespan=lifespan,
    )
    app.state.bank = bank
    app.state.engine = bank_engine
    app.state.metrics = metrics
    app.state.key_events = subscriber
    return app


def _always() -> bool:
    return True


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
