"""The public names of `mcp_server` are pinned: everything else is private; each one resolves."""

import mcp_server


def test_public_names() -> None:
    assert sorted(mcp_server.__all__) == [
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
        "TOOL_SCOPES",
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
    assert all(getattr(mcp_server, name) is not None for name in mcp_server.__all__)
