"""Which scope each MCP tool needs: the owner of the tool -> scope table (the orchestrator keeps a copy)."""

from __future__ import annotations

from typing import Final

READ: Final = "read"
TRANSACT: Final = "transact"
CONFIGURE: Final = "configure"

TOOL_SCOPES: Final[dict[str, str]] = {
    "get_balance": READ,
    "list_transactions": READ,
    "list_loans": READ,
    "list_payees": READ,
    "make_payment": TRANSACT,
    "transfer_between_accounts": TRANSACT,
    "update_notification_settings": CONFIGURE,
}
SUPPORTED_SCOPES: Final = (READ, TRANSACT, CONFIGURE)
