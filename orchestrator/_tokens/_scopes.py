"""Which issuer scope each MCP banking tool needs, and which scopes are single-use.

The MCP server owns this table (`mcp_server.TOOL_SCOPES`); the agent's runtime may import only `keys`, so it
keeps this copy, which `tests/test_contracts.py` pins equal to the owner's.
"""

from __future__ import annotations

from types import MappingProxyType

TOOL_SCOPES = MappingProxyType(
    {
        "get_balance": "read",
        "list_transactions": "read",
        "list_loans": "read",
        "list_payees": "read",
        "make_payment": "transact",
        "transfer_between_accounts": "transact",
        "update_notification_settings": "configure",
    }
)

# A `transact` token is spent by the MCP server on first use: never cache one.
SINGLE_USE_SCOPES = frozenset({"transact"})
