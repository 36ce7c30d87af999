"""Building the issuer's long-lived parts from settings, with clear one-line startup errors."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import AsyncExitStack

import httpx
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from issuer._audit import IssuerAudit
from issuer._metrics import IssuerMetrics
from issuer._oauth._approvals import ApprovalStore, MemoryApprovalStore
from issuer._oauth._approvals_redis import RedisApprovalStore
from issuer._oauth._bearer import BearerGuard
from issuer._oauth._client_auth import ClientAuthenticator
from issuer._oauth._clients import ClientRegistry, ClientRegistryError
from issuer._oauth._dpop import DPoPGate
from issuer._oauth._errors import IssuerError
from issuer._oauth._refresh import MemoryRefreshStore, RefreshLifetimes, RefreshStore
from issuer._oauth._refresh_redis import RedisRefreshStore
from issuer._oauth._spending import MemorySpendingLedger, RedisSpendingLedger, SpendingLedger
from issuer._settings import IssuerSettings
from issuer._signing._key_events import KeyEvents
from issuer._signing._mint import SESSION_GRANT_TYP, Minter
from issuer._signing._ring_keys import RingKeys
from issuer._signing._rotation import RotationLoop, Sleep
from issuer._state import IssuerState
from keys import (
    DPoPVerifier,
    FileKeyStore,
    KeyRingError,
    KeyStore,
    MemoryNonces,
    MemoryReplayCache,
    NonceSource,
    ObservedReplayCache,
    RedisKeyStore,
    RedisNonces,
    RedisReplayCache,
    ReplayCache,
    RotationPolicy,
    Verifier,
    VerifyPolicy,
    redis_client,
)

DPOP_NONCE_PREFIX = "voicebank:dpop-nonce:issuer"
log = logging.getLogger("issuer.clients")


class IssuerStartupError(IssuerError):
    """The issuer cannot start with these settings; the message says why in one line."""

    code = "startup"


def rotation_policy(settings: IssuerSettings) -> RotationPolicy:
    longest = max(
        settings.access_token_lifetime,
        settings.transact_token_lifetime,
        settings.session_grant_lifetime,
        settings.issuer_token_lifetime,
    )
    return RotationPolicy(
        period=settings.keys_rotation_period, jwks_max_age=settings.jwks_max_age, max_token_lifetime=longest
    )


def key_store(
    settings: IssuerSettings, redis: aioredis.Redis | None, clock: Callable[[], float] = time.time
) -> KeyStore:
    policy = rotation_policy(settings)
    algs = (settings.issuer_signing_alg,)
    passphrase = settings.passphrase_bytes()
    if settings.keys_store == "redis":
        if redis is None:
            raise IssuerStartupError("KEYS_STORE=redis needs REDIS_URL")
        return RedisKeyStore(redis, passphrase=passphrase, policy=policy, algs=algs, clock=clock)
    return FileKeyStore(settings.keys_dir, passphrase=passphrase, policy=policy, algs=algs, clock=clock)


def load_registry(settings: IssuerSettings) -> ClientRegistry:
    try:
        return ClientRegistry.load(settings.clients_file)
    except ClientRegistryError as exc:
        raise IssuerStartupError(f"{exc} (run `voicebank dev-init` or set ISSUER_CLIENTS_FILE)") from None


def _authenticator(
    settings: IssuerSettings,
    registry: ClientRegistry,
    replay: ReplayCache,
    http: httpx.AsyncClient,
    clock: Callable[[], float],
) -> ClientAuthenticator:
    return ClientAuthenticator(
        registry,
        issuer=settings.issuer_url,
        token_endpoint=settings.token_endpoint,
        replay=replay,
        http=http,
        clock=clock,
    )


def reload_registry(state: IssuerState) -> bool:
    """Read the clients file again and authenticate by it from now on (this replica only).

    A file that does not load keeps the registry in use, with one error line: a typo must not lock
    every client out.
    """
    try:
        registry = ClientRegistry.load(state.settings.clients_file)
    except ClientRegistryError as exc:
        log.error("client registry not reloaded; the previous one stays in use: %s", exc)
        return False
    state.clients = _authenticator(state.settings, registry, state.replay, state.http, state.clock)
    state.registry = state.bearer.registry = registry
    log.info("client registry reloaded: %d clients", len(registry))
    return True


def preflight(settings: IssuerSettings) -> None:
    """Fail before serving, with one line, on what the lifespan would fail on."""
    load_registry(settings)
    asyncio.run(_load_ring(settings))


async def _load_ring(settings: IssuerSettings) -> None:
    redis = None
    if settings.keys_store == "redis" and settings.redis_url:
        redis = redis_client(settings.redis_url)
    try:
        await key_store(settings, redis).load(time.time())
    except KeyRingError as exc:
        raise IssuerStartupError(f"cannot load the issuer key ring: {exc}") from None
    except RedisError as exc:
        raise IssuerStartupError(
            f"cannot reach Redis at REDIS_URL ({type(exc).__name__}): KEYS_STORE=redis keeps the keys there"
        ) from None
    finally:
        if redis is not None:
            await redis.aclose()


async def build_state(
    settings: IssuerSettings,
    stack: AsyncExitStack,
    *,
    clock: Callable[[], float],
    rotation_sleep: Sleep,
    metrics: IssuerMetrics,
    http_transport: httpx.AsyncBaseTransport | None = None,
) -> IssuerState:
    registry = load_registry(settings)
    redis: aioredis.Redis | None = None
    if settings.redis_url:
        # Each command is resent after a dropped connection only when that is safe (`keys.idempotent`).
        redis = redis_client(settings.redis_url)
        stack.push_async_callback(redis.aclose)
    http = httpx.AsyncClient(transport=http_transport, timeout=5.0)
    stack.push_async_callback(http.aclose)
    store = key_store(settings, redis, clock)
    try:
        ring = await store.load(clock())
    except KeyRingError as exc:
        raise IssuerStartupError(f"cannot load the issuer key ring: {exc}") from None
    except RedisError as exc:
        raise IssuerStartupError(f"cannot reach Redis at REDIS_URL: {type(exc).__name__}") from None
    if settings.issuer_signing_alg not in ring.algs:
        raise IssuerStartupError(
            f"ISSUER_SIGNING_ALG={settings.issuer_signing_alg} was retired from the key ring "
            f"(it signs with {', '.join(ring.algs)})"
        )
    lifetimes = RefreshLifetimes(settings.refresh_idle_lifetime, settings.refresh_absolute_lifetime)
    refresh: RefreshStore
    replay: ReplayCache
    approvals: ApprovalStore
    spending: SpendingLedger
    if redis is not None:
        refresh = RedisRefreshStore(redis, lifetimes)
        replay = RedisReplayCache(redis, prefix="voicebank:replay", clock=clock)
        approvals = RedisApprovalStore(redis)
        spending = RedisSpendingLedger(redis, clock=clock)
    else:
        refresh = MemoryRefreshStore(lifetimes)
        replay = MemoryReplayCache(clock=clock)
        approvals = MemoryApprovalStore()
        spending = MemorySpendingLedger(clock=clock)
    replay = ObservedReplayCache(replay, metrics.observe_replay)
    nonces: NonceSource | None = None
    if settings.dpop_nonce == "required":
        nonces = (
            RedisNonces(redis, prefix=DPOP_NONCE_PREFIX, clock=clock)
            if redis is not None
            else MemoryNonces(clock=clock)
        )
    dpop = DPoPGate(DPoPVerifier(replay, nonces=nonces, clock=clock, prefix="dpop:issuer"), nonces)
    ring_keys = RingKeys(store)
    await ring_keys.sync()
    metrics.observe_ring(ring, rotation_policy(settings))
    events = KeyEvents(redis, store_publishes=isinstance(store, RedisKeyStore))
    issuer = settings.issuer_url
    grant_policy = VerifyPolicy(
        issuer=issuer,
        audience=issuer,
        typ=SESSION_GRANT_TYP,
        required=frozenset({"sub", "jti", "sid", "scope", "may_act"}),
        max_lifetime=settings.session_grant_lifetime,
    )
    return IssuerState(
        settings=settings,
        clock=clock,
        registry=registry,
        store=store,
        ring_keys=ring_keys,
        refresh=refresh,
        replay=replay,
        minter=Minter(store, issuer=issuer, alg=settings.issuer_signing_alg),
        clients=_authenticator(settings, registry, replay, http, clock),
        dpop=dpop,
        bearer=BearerGuard(
            ring_keys,
            issuer=issuer,
            max_lifetime=settings.issuer_token_lifetime,
            registry=registry,
            clock=clock,
        ),
        # Session grants are single-use (replay-checked by the exchange): none would be read from a cache.
        grants=Verifier(ring_keys, grant_policy, clock=clock, cache_tokens=False),
        rotation=RotationLoop(
            store,
            clock=clock,
            interval=settings.rotation_tick,
            events=events,
            metrics=metrics,
            sleep=rotation_sleep,
        ),
        events=events,
        metrics=metrics,
        audit=IssuerAudit(clock=clock),
        http=http,
        redis=redis,
        approvals=approvals,
        spending=spending,
    )
