"""Banking MCP server: tools over a real database behind strict bearer-token auth."""

from ._app import create_app
from ._auth import TokenVerifier
from ._bank import Bank
from ._db import create_schema, make_engine
from ._errors import (
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
from ._key_events import KeyDropper, KeyEventSubscriber, parse_key_event
from ._metrics import metrics_app
from ._production import access_token_policy, build_app_from_settings, serve
from ._replay import MemoryReplayStore, RedisReplayStore, ReplayStore, ReplayStoreUnavailable
from ._scopes import TOOL_SCOPES
from ._seed import seed, seed_bank
from ._settings import McpSettings

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
    "McpSettings",
    "MemoryReplayStore",
    "OverLimit",
    "PayeeNotFound",
    "RedisReplayStore",
    "ReplayStore",
    "ReplayStoreUnavailable",
    "SameAccount",
    "TokenVerifier",
    "access_token_policy",
    "build_app_from_settings",
    "create_app",
    "create_schema",
    "make_engine",
    "metrics_app",
    "parse_key_event",
    "seed",
    "seed_bank",
    "serve",
]
