"""What a client learns before any call: each tool's MCP annotations and required scope, our version.

A generic MCP client reads `tools/list` to decide what to ask its user: annotations say whether a tool only
reads (`readOnlyHint`), may change something that cannot be taken back (`destructiveHint`), and whether
repeating the same call has no further effect (`idempotentHint`); `_meta` names the scope the caller's token
needs (`mcp_server/_auth/_scopes.py` owns that table), so a client can get the right token before it calls.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Final

from mcp_server._auth._scopes import READ, TOOL_SCOPES

__all__ = ["SCOPE_META_KEY", "hints", "needs", "server_version"]

SCOPE_META_KEY: Final = "voicebank/scope"

# tool -> (destructive, idempotent) for the tools that write; every `read` tool only reads.
_WRITES: Final[dict[str, tuple[bool, bool]]] = {
    # Money leaves an account and no tool brings it back; the same idempotency key never pays twice.
    "make_payment": (True, True),
    "transfer_between_accounts": (True, True),
    # Replaces the caller's alert settings with the values given: the same values again change nothing.
    "update_notification_settings": (True, True),
}


def hints(tool: str) -> dict[str, bool]:
    """The MCP annotations of one banking tool (`FastMCP.tool(annotations=...)`)."""
    reads = TOOL_SCOPES[tool] == READ
    destructive, idempotent = (False, True) if reads else _WRITES[tool]
    return {
        "readOnlyHint": reads,
        "destructiveHint": destructive,
        "idempotentHint": idempotent,
        "openWorldHint": False,  # the bank's own database, nothing outside it
    }


def needs(tool: str) -> dict[str, Any]:
    """The `_meta` of one banking tool: the scope a token must carry to call it."""
    return {SCOPE_META_KEY: TOOL_SCOPES[tool]}


def server_version() -> str:
    """voicebank's version, from the installed package's metadata (`serverInfo.version` of `initialize`)."""
    return metadata.version("voicebank")
