"""The root of the MCP server's errors.

    McpServerError              mcp_server_error
    ├── InvalidPrincipal        invalid_claim       verified claims that do not describe a caller (`_auth`)
    ├── CurrencyUnavailable     bank_unavailable    the bank cannot tell an account's currency (`_auth`)
    ├── Denial                  denied              a request the endpoint refuses (`_auth/_denials.py`)
    │   ├── BindingMismatch     insufficient_authorization_details: not the token's movement (`_binding.py`)
    │   └── DPoPRefusal         dpop_refused        ... by the DPoP rules (`_auth/_dpop.py`)
    └── BankError               bank_error          a refused banking request (`_bank/_errors.py`)

Replay-cache and key outages are `keys` errors (`keys.ReplayUnavailable`, `keys.KeysUnavailable`).
"""

from __future__ import annotations


class McpServerError(Exception):
    """Root of every error the MCP server raises; `code` is stable."""

    code = "mcp_server_error"
