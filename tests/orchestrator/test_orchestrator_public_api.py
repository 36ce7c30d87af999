"""The public names of `orchestrator` are pinned, each resolves, and importing the package stays cheap."""

import json
import subprocess
import sys
from pathlib import Path

import orchestrator
import orchestrator._commands

ROOT = Path(__file__).resolve().parents[2]


def test_public_names() -> None:
    assert sorted(orchestrator.__all__) == [
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
    for name in orchestrator.__all__:
        value = getattr(orchestrator, name)
        assert getattr(value, "__name__", name) == name  # the object itself, not a module or a stand-in
    assert orchestrator._commands.__all__ == ["main"]


def test_an_unknown_name_is_an_attribute_error() -> None:
    assert not hasattr(orchestrator, "no_such_name")


def test_importing_the_package_loads_no_agent_runtime() -> None:
    # The `voicebank` command line imports this package first: it must not pay for livekit-agents or FastMCP.
    probe = (
        "import json, sys, orchestrator; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(json.loads(result.stdout))
    assert loaded.isdisjoint({"livekit", "fastmcp", "fastapi", "issuer", "mcp_server"})
