"""Banking MCP server: tools over a real database behind strict bearer-token auth."""

from mcp_server._app import create_app
from mcp_server._auth._key_events import KeyDropper, KeyEventSubscriber
from mcp_server._auth._middleware import TokenVerifier
from mcp_server._auth._scopes import TOOL_SCOPES
from mcp_server._bank._db import create_schema, make_engine
from mcp_server._bank._errors import (
    AccountClosed,
    AccountNotFound,
    BankError,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    InvalidArgument,
    OverLimit,
    PayeeNotFound,
    SameAccount,
)
from mcp_server._bank._seed import seed, seed_bank
from mcp_server._bank._service import Bank
from mcp_server._errors import McpServerError
from mcp_server._metrics import metrics_app
from mcp_server._production import access_token_policy, build_app_from_settings
from mcp_server._settings import McpSettings

__all__ = [
    "TOOL_SCOPES",
    "AccountClosed",
    "AccountNotFound",
    "Bank",
    "BankError",
    "IdempotencyConflict",
    "InsufficientFunds",
    "InvalidAmount",
    "InvalidArgument",
    "KeyDropper",
    "KeyEventSubscriber",
    "McpServerError",
    "McpSettings",
    "OverLimit",
    "PayeeNotFound",
    "SameAccount",
    "TokenVerifier",
    "access_token_policy",
    "build_app_from_settings",
    "create_app",
    "create_schema",
    "make_engine",
    "metrics_app",
    "seed",
    "seed_bank",
]
