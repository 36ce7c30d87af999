"""The banking MCP tools: each runs for the authenticated `sub` only, with the scope it needs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import mcp_types as mt
from fastmcp import FastMCP
from fastmcp.exceptions import NotFoundError, ToolError, ValidationError
from fastmcp.server.dependencies import get_http_request
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools import ToolResult
from pydantic import ValidationError as PydanticValidationError

from mcp_server._advertised import hints, needs, server_version
from mcp_server._arguments import (
    AccountTypeArg,
    Amount,
    ArgumentRefusal,
    ChannelArg,
    Id,
    IdempotencyKey,
    Limit,
    Memo,
)
from mcp_server._audit import AuditLog
from mcp_server._auth._binding import MOVEMENT_TOOLS, BindingMismatch, check_call
from mcp_server._auth._principal import SCOPE_KEY, SPENT_KEY, Principal
from mcp_server._auth._scopes import TOOL_SCOPES, TRANSACT
from mcp_server._bank._errors import BankError
from mcp_server._bank._service import Bank
from mcp_server._metrics import Metrics
from mcp_server._token_scan import looks_like_token


class _Refused(Exception):
    """A tool call refused before the bank ran; message is speakable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class BankTools:
    """Binds the bank to the tools and records every outcome."""

    def __init__(self, bank: Bank, audit: AuditLog, metrics: Metrics, *, threads: int | None = None) -> None:
        self.bank = bank
        self._audit = audit
        self._metrics = metrics
        # At most `threads` bank calls at once (None: anyio's default thread limit).
        self._limiter = anyio.CapacityLimiter(threads) if threads else None

    async def run(
        self,
        tool: str,
        call: Callable[[str], dict[str, Any]],
        *texts: str | None,
        movement: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run `call(sub)` in a worker thread; bank refusals become tool errors.

        `movement` is a money-moving tool's arguments as FastMCP parsed them: checked against the token's
        authorization details once more, so no difference between two JSON parsers can move other money.
        """
        start = time.perf_counter()
        principal: Principal | None = None
        outcome: str = "error"
        reason: str | None = "internal"
        try:
            principal = _principal()
            if TOOL_SCOPES[tool] not in principal.scopes:
                # The middleware already answered 403; this is the second lock on the door.
                raise _Refused("insufficient_scope", "This action is not allowed in this call.")
            if TOOL_SCOPES[tool] == TRANSACT and get_http_request().scope.get(SPENT_KEY) is not True:
                # Only a tools/call the middleware saw (and spent the jti for) may move money.
                raise _Refused("jti_not_spent", "This action is not allowed in this call.")
            if tool in MOVEMENT_TOOLS:
                try:
                    check_call(principal.movement, tool, movement)
                except BindingMismatch as exc:
                    raise _Refused(exc.reason, "This is not the payment that was authorized.") from None
            sub = principal.sub
            # Off the event loop, with the bank call: no check of client text ever holds up other users.
            result = await anyio.to_thread.run_sync(
                lambda: _without_tokens(texts, lambda: call(sub)), limiter=self._limiter
            )
            outcome, reason = "ok", None
            return result
        except (BankError, _Refused) as exc:
            outcome, reason = "refused", exc.code
            # A refusal is a normal answer, not a server error: keep it out of the error log.
            raise ToolError(str(exc), log_level=logging.INFO) from None
        finally:
            self._finish(tool, principal, outcome, reason, start)

    def record_refusal(self, tool: str | None, reason: str, start: float) -> None:
        """Record a call refused before its tool ran (arguments against the schema, an unknown tool)."""
        try:
            principal: Principal | None = _principal()
        except _Refused:
            principal = None
        self._finish(tool, principal, "refused", reason, start)

    def _finish(
        self, tool: str | None, principal: Principal | None, outcome: str, reason: str | None, start: float
    ) -> None:
        elapsed = time.perf_counter() - start
        if tool is not None:
            self._metrics.tool_latency.labels(tool, outcome).observe(elapsed)
        self._audit.record(
            principal=principal, tool=tool, outcome=outcome, reason=reason, latency_ms=elapsed * 1000
        )


def _without_tokens(texts: tuple[str | None, ...], then: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    if any(t is not None and looks_like_token(t) for t in texts):
        raise _Refused("token_in_arguments", "Tokens are not accepted in tool arguments.")
    return then()


class _ArgumentGate(Middleware):
    """Answers arguments the input schema refuses (and unknown tools) with one sentence and an audit line."""

    def __init__(self, tools: BankTools) -> None:
        self._tools = tools

    async def on_call_tool(
        self,
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        start = time.perf_counter()
        name = context.message.name
        try:
            return await call_next(context)
        except ValidationError as exc:
            cause = exc.__cause__
            if not isinstance(cause, PydanticValidationError):
                raise
            refusal = ArgumentRefusal.of(cause)
            self._tools.record_refusal(name, refusal.reason, start)
            raise ToolError(refusal.sentence, log_level=logging.INFO) from None
        except NotFoundError:
            # The name is client text of any length: the audit line says what happened, not what was sent.
            self._tools.record_refusal(None, "unknown_tool", start)
            raise


def _principal() -> Principal:
    principal = get_http_request().scope.get(SCOPE_KEY)
    if not isinstance(principal, Principal):
        raise _Refused("unauthenticated", "This call is not authorized.")
    return principal


def build_mcp(tools: BankTools) -> FastMCP:
    """The FastMCP server with the seven banking tools."""
    mcp = FastMCP(
        "voicebank",
        version=server_version(),
        mask_error_details=True,
        strict_input_validation=True,
        middleware=[_ArgumentGate(tools)],
    )
    bank = tools.bank

    @mcp.tool(annotations=hints("get_balance"), meta=needs("get_balance"))
    async def get_balance(account_type: AccountTypeArg | None = None) -> dict[str, Any]:
        """Balances of the caller's accounts; account_type is checking, savings or credit."""
        return await tools.run("get_balance", lambda sub: bank.get_balance(sub, account_type), account_type)

    @mcp.tool(annotations=hints("list_transactions"), meta=needs("list_transactions"))
    async def list_transactions(account_id: Id | None = None, limit: Limit = 10) -> dict[str, Any]:
        """The caller's recent transactions, newest first (limit 1 to 100)."""
        return await tools.run(
            "list_transactions", lambda sub: bank.list_transactions(sub, account_id, limit), account_id
        )

    @mcp.tool(annotations=hints("list_loans"), meta=needs("list_loans"))
    async def list_loans() -> dict[str, Any]:
        """The caller's loans."""
        return await tools.run("list_loans", bank.list_loans)

    @mcp.tool(annotations=hints("list_payees"), meta=needs("list_payees"))
    async def list_payees() -> dict[str, Any]:
        """The people and companies the caller can pay."""
        return await tools.run("list_payees", bank.list_payees)

    @mcp.tool(annotations=hints("make_payment"), meta=needs("make_payment"))
    async def make_payment(
        from_account_id: Id,
        payee_id: Id,
        amount: Amount,
        idempotency_key: IdempotencyKey,
        memo: Memo | None = None,
    ) -> dict[str, Any]:
        """Pay a payee; amount is a decimal string like "12.50"; one payment per idempotency_key."""
        return await tools.run(
            "make_payment",
            lambda sub: bank.make_payment(sub, from_account_id, payee_id, amount, idempotency_key, memo),
            from_account_id,
            payee_id,
            amount,
            idempotency_key,
            memo,
            movement={
                "from_account_id": from_account_id,
                "payee_id": payee_id,
                "amount": amount,
                "idempotency_key": idempotency_key,
            },
        )

    @mcp.tool(annotations=hints("transfer_between_accounts"), meta=needs("transfer_between_accounts"))
    async def transfer_between_accounts(
        from_account_id: Id, to_account_id: Id, amount: Amount, idempotency_key: IdempotencyKey
    ) -> dict[str, Any]:
        """Move money between two of the caller's accounts; one transfer per idempotency_key."""
        return await tools.run(
            "transfer_between_accounts",
            lambda sub: bank.transfer_between_accounts(
                sub, from_account_id, to_account_id, amount, idempotency_key
            ),
            from_account_id,
            to_account_id,
            amount,
            idempotency_key,
            movement={
                "from_account_id": from_account_id,
                "to_account_id": to_account_id,
                "amount": amount,
                "idempotency_key": idempotency_key,
            },
        )

    @mcp.tool(annotations=hints("update_notification_settings"), meta=needs("update_notification_settings"))
    async def update_notification_settings(
        low_balance_alert: bool | None = None,
        low_balance_threshold: Amount | None = None,
        large_payment_alert: bool | None = None,
        channel: ChannelArg | None = None,
    ) -> dict[str, Any]:
        """Change alert settings; channel is sms, email or push; answers the resulting settings."""
        return await tools.run(
            "update_notification_settings",
            lambda sub: bank.update_notification_settings(
                sub, low_balance_alert, low_balance_threshold, large_payment_alert, channel
            ),
            low_balance_threshold,
            channel,
        )

    return mcp
