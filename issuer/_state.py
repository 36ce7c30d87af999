"""Everything long-lived of one issuer app, built in its lifespan and kept on `app.state.issuer`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
import redis.asyncio as aioredis

from issuer._audit import IssuerAudit
from issuer._metrics import IssuerMetrics
from issuer._oauth._approvals import ApprovalStore
from issuer._oauth._bearer import BearerGuard
from issuer._oauth._client_auth import ClientAuthenticator
from issuer._oauth._clients import ClientRegistry
from issuer._oauth._dpop import DPoPGate
from issuer._oauth._refresh import RefreshStore
from issuer._oauth._spending import SpendingLedger
from issuer._settings import IssuerSettings
from issuer._signing._key_events import KeyEvents
from issuer._signing._mint import Minter
from issuer._signing._ring_keys import RingKeys
from issuer._signing._rotation import RotationLoop
from keys import KeyStore, ReplayCache, Verifier


@dataclass
class IssuerState:
    settings: IssuerSettings
    clock: Callable[[], float]
    registry: ClientRegistry
    store: KeyStore
    ring_keys: RingKeys
    refresh: RefreshStore
    replay: ReplayCache
    minter: Minter
    clients: ClientAuthenticator
    dpop: DPoPGate
    bearer: BearerGuard
    grants: Verifier
    rotation: RotationLoop
    events: KeyEvents
    metrics: IssuerMetrics
    audit: IssuerAudit
    http: httpx.AsyncClient
    redis: aioredis.Redis | None
    approvals: ApprovalStore
    spending: SpendingLedger
