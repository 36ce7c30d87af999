"""The voice agent (the orchestrator): the banking agent, one call's lifecycle, its token client and MCP bank.

Every name loads its module on first use: `import orchestrator` stays cheap, so the `voicebank` command line
(which lives in `orchestrator._commands` and imports this package first) does not load livekit-agents or
FastMCP for commands that never run a call.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator._agent._banking_agent import BankingAgent, CallState
    from orchestrator._bank._mcp import McpBank
    from orchestrator._bank._movement import Movement
    from orchestrator._bank._protocol import (
        ApprovalDeclined,
        ApprovalExpired,
        ApprovalRequired,
        AuthorizationLost,
        Bank,
        BankError,
        NotAuthorized,
        PendingApproval,
        ServiceUnavailable,
        ToolRefused,
    )
    from orchestrator._call._identity import CallerIdentity, IdentityRefused, parse_identity
    from orchestrator._call._session_store import (
        MemorySessionStore,
        RedisSessionStore,
        SessionRecord,
        SessionStore,
    )
    from orchestrator._call._settings import AgentSettings, NotConfigured
    from orchestrator._call._voice_call import AgentWiring, VoiceCall
    from orchestrator._call._wiring import CallBank, ConnectionSettings, open_bank
    from orchestrator._errors import OrchestratorError
    from orchestrator._tokens._issuer_client import IssuerClient, TokenResponse
    from orchestrator._tokens._manager import TokenManager
    from orchestrator._tokens._retry import RetryPolicy

__all__ = [
    "AgentSettings",
    "AgentWiring",
    "ApprovalDeclined",
    "ApprovalExpired",
    "ApprovalRequired",
    "AuthorizationLost",
    "Bank",
    "BankError",
    "BankingAgent",
    "CallBank",
    "CallState",
    "CallerIdentity",
    "ConnectionSettings",
    "IdentityRefused",
    "IssuerClient",
    "McpBank",
    "MemorySessionStore",
    "Movement",
    "NotAuthorized",
    "NotConfigured",
    "OrchestratorError",
    "PendingApproval",
    "RedisSessionStore",
    "RetryPolicy",
    "ServiceUnavailable",
    "SessionRecord",
    "SessionStore",
    "TokenManager",
    "TokenResponse",
    "ToolRefused",
    "VoiceCall",
    "open_bank",
    "parse_identity",
]


def _module_of(name: str) -> ModuleType:
    """The module that defines a public name; static imports, so tools and tests see every edge."""
    if name in ("BankingAgent", "CallState"):
        from orchestrator._agent import _banking_agent

        return _banking_agent
    if name == "McpBank":
        from orchestrator._bank import _mcp

        return _mcp
    if name == "Movement":
        from orchestrator._bank import _movement

        return _movement
    if name in (
        "ApprovalDeclined",
        "ApprovalExpired",
        "ApprovalRequired",
        "AuthorizationLost",
        "Bank",
        "BankError",
        "NotAuthorized",
        "PendingApproval",
        "ServiceUnavailable",
        "ToolRefused",
    ):
        from orchestrator._bank import _protocol

        return _protocol
    if name in ("CallerIdentity", "IdentityRefused", "parse_identity"):
        from orchestrator._call import _identity

        return _identity
    if name in ("MemorySessionStore", "RedisSessionStore", "SessionRecord", "SessionStore"):
        from orchestrator._call import _session_store

        return _session_store
    if name in ("AgentSettings", "NotConfigured"):
        from orchestrator._call import _settings

        return _settings
    if name in ("AgentWiring", "VoiceCall"):
        from orchestrator._call import _voice_call

        return _voice_call
    if name in ("CallBank", "ConnectionSettings", "open_bank"):
        from orchestrator._call import _wiring

        return _wiring
    if name == "OrchestratorError":
        from orchestrator import _errors

        return _errors
    if name in ("IssuerClient", "TokenResponse"):
        from orchestrator._tokens import _issuer_client

        return _issuer_client
    if name == "TokenManager":
        from orchestrator._tokens import _manager

        return _manager
    if name == "RetryPolicy":
        from orchestrator._tokens import _retry

        return _retry
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")


def __getattr__(name: str) -> object:
    """Load a public name's module on first use (PEP 562)."""
    value: object = getattr(_module_of(name), name)
    globals()[name] = value  # later lookups skip this function
    return value
