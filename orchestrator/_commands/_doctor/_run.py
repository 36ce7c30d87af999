"""`voicebank doctor`: the settings every part would read here, checked in the order one fixes them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from issuer import IssuerSettings, key_store
from keys import client_key_path
from mcp_server import McpSettings
from orchestrator._call._wiring import ConnectionSettings
from orchestrator._commands._doctor._local import (
    client_keys_match,
    clients_file,
    database,
    file_modes,
    key_ring,
    redis_answers,
)
from orchestrator._commands._doctor._remote import issuer_named, issuer_view, jwks_served, mcp_server_agrees
from orchestrator._commands._doctor._report import Check, report

__all__ = ["DoctorSettings", "doctor"]

_ISSUER_ELSEWHERE = "clients' assertions and session grants name the wrong issuer (invalid_client)"
_MCP_TRUSTS_ELSEWHERE = "the MCP server would refuse every token (wrong issuer)"


@dataclass(frozen=True)
class DoctorSettings:
    """The settings of every part, each read as that part reads it."""

    issuer: IssuerSettings
    mcp: McpSettings
    agent: ConnectionSettings

    @classmethod
    def from_environment(cls, state: Path | None = None) -> DoctorSettings:
        if state is None:
            return cls(IssuerSettings(), McpSettings(), ConnectionSettings())
        return cls(
            IssuerSettings(voicebank_state=state),
            McpSettings(voicebank_state=state),
            ConnectionSettings(voicebank_state=state),
        )

    @property
    def mcp_issuer_url(self) -> str:
        """The issuer the MCP server trusts, as `voicebank up` picks it: MCP_ISSUER_URL, else ISSUER_URL."""
        if "mcp_issuer_url" in self.mcp.model_fields_set:
            return self.mcp.mcp_issuer_url
        return self.issuer.issuer_url

    @property
    def jwks_url(self) -> str:
        return self.mcp.mcp_jwks_url or f"{self.mcp_issuer_url.rstrip('/')}/.well-known/jwks.json"


def _passphrase_source(settings: IssuerSettings) -> str:
    if settings.keys_passphrase is not None and settings.keys_passphrase.get_secret_value():
        return "KEYS_PASSPHRASE"
    if (settings.voicebank_state / "passphrase").is_file():
        return f"the passphrase file {settings.voicebank_state / 'passphrase'}"
    return "no passphrase"


async def _issuer_keys(settings: IssuerSettings, clock: Callable[[], float]) -> Check:
    # KEYS_STORE=redis without REDIS_URL does not pass the settings' own validation.
    client = (
        aioredis.Redis.from_url(settings.redis_url)
        if settings.redis_url and settings.keys_store == "redis"
        else None
    )
    try:
        where = "Redis" if client is not None else str(settings.keys_dir)
        return await key_ring(key_store(settings, client, clock), where, _passphrase_source(settings))
    finally:
        if client is not None:
            await client.aclose()


async def _checks(
    settings: DoctorSettings, http: httpx.AsyncClient, clock: Callable[[], float]
) -> list[Check]:
    issuer = settings.issuer
    view = await issuer_view(http, issuer.issuer_url)
    checks = [issuer_named(view, "ISSUER_URL", _ISSUER_ELSEWHERE)]
    if settings.mcp_issuer_url != issuer.issuer_url:
        trusted = await issuer_view(http, settings.mcp_issuer_url)
        checks.append(issuer_named(trusted, "MCP_ISSUER_URL", _MCP_TRUSTS_ELSEWHERE))
    checks.append(await jwks_served(http, settings.jwks_url))
    checks.append(
        await mcp_server_agrees(
            http, mcp_url=settings.agent.mcp_url, resource=issuer.mcp_resource_url, issuer=issuer.issuer_url
        )
    )
    clients, registry = clients_file(issuer.clients_file)
    checks.append(clients)
    if registry is not None:
        state = issuer.voicebank_state
        keys = {client.client_id: client_key_path(state, client.client_id) for client in registry.clients()}
        if settings.agent.orchestrator_client_key is not None:
            keys[settings.agent.orchestrator_client_id] = settings.agent.orchestrator_client_key
        checks.append(client_keys_match(registry, keys))
    checks.append(await _issuer_keys(issuer, clock))
    checks.append(await redis_answers(issuer.redis_url or settings.mcp.redis_url))
    checks.append(database(settings.mcp.database_url))
    checks.append(file_modes(issuer.voicebank_state))
    return checks


async def doctor(
    settings: DoctorSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
) -> tuple[str, int]:
    """Every check's line, and the exit status (1 when one failed)."""
    async with httpx.AsyncClient(transport=transport, timeout=5.0) as http:
        return report(await _checks(settings, http, clock))
