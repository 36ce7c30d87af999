"""The production wiring of one call: issuer client, token manager and MCP bank from settings."""

from __future__ import annotations

import functools
from pathlib import Path

import httpx
import httpx2
from pydantic_settings import BaseSettings, SettingsConfigDict

from keys import KeyMaterialError, KeyPair, load_client_key
from orchestrator._bank._mcp import McpBank
from orchestrator._bank._protocol import Bank
from orchestrator._call._identity import CallerIdentity
from orchestrator._call._settings import NotConfigured
from orchestrator._call._voice_call import AgentWiring
from orchestrator._tokens._dpop import CallKey
from orchestrator._tokens._issuer_client import IssuerClient
from orchestrator._tokens._manager import TokenManager

__all__ = [
    "CallBank",
    "ConnectionSettings",
    "close_bank",
    "default_wiring",
    "load_orchestrator_key",
    "open_bank",
]


class ConnectionSettings(BaseSettings):
    """Where the orchestrator finds the issuer and the MCP server, and the key it proves itself with."""

    model_config = SettingsConfigDict(
        use_attribute_docstrings=True, case_sensitive=False, extra="ignore", frozen=True
    )

    issuer_url: str = "http://127.0.0.1:8000"
    """Where the agent reaches the issuer (token exchange, refresh, revocation)."""
    mcp_url: str = "http://127.0.0.1:8001/mcp"
    """Where the agent reaches the MCP server; it must serve the resource `MCP_RESOURCE_URL` names."""
    orchestrator_client_id: str = "orchestrator"
    """The client id the agent authenticates as (`private_key_jwt`)."""
    orchestrator_client_key: Path | None = None
    """The agent's private key (PKCS#8 PEM); unset: `$VOICEBANK_STATE/clients/<client id>.pem` from
    `dev-init`."""
    voicebank_state: Path = Path("./var")
    """The state directory holding the dev clients' keys."""


def load_orchestrator_key(settings: ConnectionSettings) -> KeyPair:
    """The orchestrator's private key: `ORCHESTRATOR_CLIENT_KEY`, else the dev state directory's."""
    try:
        if settings.orchestrator_client_key is not None:
            return KeyPair.from_pem(settings.orchestrator_client_key.read_bytes(), None)
        return load_client_key(settings.voicebank_state, settings.orchestrator_client_id)
    except (OSError, KeyMaterialError) as exc:
        raise NotConfigured(
            f"cannot load the orchestrator's client key ({type(exc).__name__}): set ORCHESTRATOR_CLIENT_KEY "
            "or run `voicebank dev-init`"
        ) from None


class CallBank(McpBank):
    """An `McpBank` that owns the call's token manager and issuer connection, and ends them together."""

    def __init__(
        self,
        tokens: TokenManager,
        mcp_url: str,
        issuer_http: httpx.AsyncClient,
        dpop: CallKey | None = None,
        mcp_transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(tokens, mcp_url, dpop=dpop, transport=mcp_transport)
        self.tokens = tokens
        self.dpop = dpop
        self._issuer_http = issuer_http

    async def end(self) -> bool:
        """Close the MCP pool, revoke the refresh-token family, close the issuer connection."""
        try:
            await self.aclose()
            return await self.tokens.revoke()
        finally:
            await self._issuer_http.aclose()


async def open_bank(
    settings: ConnectionSettings,
    identity: CallerIdentity,
    *,
    issuer_transport: httpx.AsyncBaseTransport | None = None,
    mcp_transport: httpx2.AsyncBaseTransport | None = None,
) -> Bank:
    """Exchange the caller's session grant and return the bank of this call (the transports: httpx's)."""
    key = load_orchestrator_key(settings)
    # A fresh DPoP key for this call only, in memory: every issuer and MCP request proves possession of it,
    # so a token lifted from the call is useless elsewhere. It ends with the call.
    dpop = CallKey()
    http = httpx.AsyncClient(transport=issuer_transport, timeout=httpx.Timeout(10.0, connect=5.0))
    client = IssuerClient(
        http, issuer=settings.issuer_url, client_id=settings.orchestrator_client_id, key=key, dpop=dpop
    )
    tokens = TokenManager(client, session_id=identity.session_id)
    try:
        await tokens.start(identity.session_grant)
    except BaseException:
        await http.aclose()
        raise
    return CallBank(tokens, settings.mcp_url, http, dpop, mcp_transport)


async def close_bank(identity: CallerIdentity, bank: Bank) -> None:
    """At call end: revoke the family (the issuer forgets the call's refresh tokens)."""
    del identity
    if isinstance(bank, CallBank):
        await bank.end()


def default_wiring(settings: ConnectionSettings) -> AgentWiring:
    """Picklable wiring for the worker's job processes."""
    load_orchestrator_key(settings)  # fail at start-up, not in the first call
    return AgentWiring(functools.partial(open_bank, settings), close_bank)
