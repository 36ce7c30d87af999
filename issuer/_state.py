"""Everything long-lived of one issuer app, built in its lifespan and kept on `app.state.issuer`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
import redis.asyncio as aioredis

from issuer._approvals import ApprovalStore
from issuer._audit import IssuerAudit
from issuer._bearer import BearerGuard
from issuer._client_auth import ClientAuthenticator
from issuer._clients import ClientRegistry
from issuer._key_events import KeyEvents
from issuer._metrics import IssuerMetrics
from issuer._mint import Minter
from issuer._refresh import RefreshStore
from issuer._replay import ReplayCache
from issuer._ring_keys import RingKeys
from issuer._rotation import RotationLoop
from issuer._settings import IssuerSettings
from issuer._spending import SpendingLedger
from keys import KeyStore, Verifier


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
    bearer: BearerGuard
    grants: Verifier
    rotation: RotationLoop
    events: KeyEvents
    metrics: IssuerMetrics
    http: httpx.AsyncClient
    redis: aioredis.Redis | None
    approvals: ApprovalStore
    spending: SpendingLedger
    audit: IssuerAudit
