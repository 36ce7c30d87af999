"""`McpBank`: the `Bank` protocol over one FastMCP client per call; each tool under its own scope's token."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from contextvars import ContextVar
from typing import Any

import httpx2
import mcp_types
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from fastmcp.exceptions import McpError
from opentelemetry import trace

from orchestrator._bank._movement import Movement
from orchestrator._bank._protocol import ApprovalRequired, NotAuthorized, ServiceUnavailable, ToolRefused
from orchestrator._tokens._bearer import ToolBearer
from orchestrator._tokens._dpop import CallKey
from orchestrator._tokens._errors import InteractionRequired
from orchestrator._tokens._issuer_client import BackchannelRequest
from orchestrator._tokens._manager import AccessToken, TokenManager
from orchestrator._tokens._scopes import TOOL_SCOPES
from orchestrator._tracing import trace_headers, tracer

TRANSACT = "transact"

__all__ = ["McpBank"]

log = logging.getLogger(__name__)

_UNREACHABLE = "I can't reach the bank right now. Please try again in a moment."
_UNVERIFIED = "The bank could not verify this session right now. Please try again in a moment."
_FORBIDDEN = "This call is not allowed to do that."
_UNREADABLE = "The bank gave an answer I could not read."
# How FastMCP's client reports a call that did not complete: the protocol's McpError (an HTTP error status,
# a closed connection), a transport error, a timeout, or the RuntimeError it raises for a session that
# failed to connect or died (wrapping the transport's error). Anything else is a bug in our code and
# propagates instead of being reported to the caller as "cannot reach the bank".
_CALL_FAILED = (McpError, httpx2.HTTPError, TimeoutError, RuntimeError)


# The stateless protocol: one tool call is one HTTP request (no initialize, no session to lose).
PROTOCOL = "2026-07-28"
# The connection broke before an answer came (the MCP server restarted mid-call); not a timeout.
_BROKEN = (httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.WriteError)


class _SharedPool(httpx2.AsyncBaseTransport):
    """One connection pool for every tool call; closing a call's client leaves the pool open."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            return await self._inner.handle_async_request(request)
        except _BROKEN:
            # Resent once on a new connection. Safe for every tool: reads change nothing, a payment's
            # idempotency key never pays twice, and a transact token spent by the lost attempt gets a 401,
            # which ToolBearer answers with a fresh token.
            log.info("MCP connection broke mid-call; resending once")
            return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        return None  # the pool belongs to the McpBank, see McpBank.aclose


class _ToolCallAuth(httpx2.Auth):
    """The credentials and trace context of the tool call that sent the request.

    One MCP client serves all tool calls of a voice call, so its HTTP client cannot hold one call's
    credentials. The client sends each request from a task running in the sending call's context (the
    SDK carries the sender's context with the message), where `current` names that call's `ToolBearer`
    and the current span is that call's.
    """

    def __init__(self, current: ContextVar[ToolBearer]) -> None:
        self._current = current

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        request.headers.update(trace_headers())
        flow = self._current.get().async_auth_flow(request)
        sent = await anext(flow)
        while True:
            response = yield sent
            try:
                sent = await flow.asend(response)
            except StopAsyncIteration:
                return


class McpBank:
    """The banking tools of the MCP server at `url`, called for the session whose tokens `tokens` holds.

    Each tool call is one stateless MCP request (protocol 2026-07-28: no initialize, no session) carrying
    a token of exactly that tool's scope. One MCP client, opened at the first call, serves every call
    over one connection pool: an MCP server restart costs nothing more than a new TCP connection, a call
    it broke is resent once, and a client that died is replaced at the next call.
    """

    def __init__(
        self,
        tokens: TokenManager,
        url: str,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        dpop: CallKey | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._tokens = tokens
        self._dpop = dpop  # the call's DPoP key: every request proves possession of it
        self._tracer = tracer(tracer_provider)
        self._url = url
        self._pool = transport if transport is not None else httpx2.AsyncHTTPTransport()
        self._shared = _SharedPool(self._pool)
        self._timeout = httpx2.Timeout(timeout, connect=connect_timeout)
        self._bearer: ContextVar[ToolBearer] = ContextVar("tool_call_bearer")
        self._auth = _ToolCallAuth(self._bearer)
        self._client: Client[StreamableHttpTransport] | None = None
        self._closing = contextlib.AsyncExitStack()  # closes `_client`
        self._opening = asyncio.Lock()

    async def aclose(self) -> None:
        """Close the MCP client and the connection pool."""
        await self._drop_client()
        await self._pool.aclose()

    async def get_balance(self, account_type: str | None = None) -> dict[str, Any]:
        return await self._call("get_balance", account_type=account_type)

    async def list_transactions(self, account_id: str | None = None, limit: int = 10) -> dict[str, Any]:
        return await self._call("list_transactions", account_id=account_id, limit=limit)

    async def list_loans(self) -> dict[str, Any]:
        return await self._call("list_loans")

    async def list_payees(self) -> dict[str, Any]:
        return await self._call("list_payees")

    async def make_payment(
        self,
        from_account_id: str,
        payee_id: str,
        amount: str,
        idempotency_key: str,
        memo: str | None = None,
        *,
        confirmed: Movement,
    ) -> dict[str, Any]:
        return await self._move(
            confirmed,
            "make_payment",
            from_account_id=from_account_id,
            payee_id=payee_id,
            amount=amount,
            idempotency_key=idempotency_key,
            memo=memo,
        )

    async def transfer_between_accounts(
        self,
        from_account_id: str,
        to_account_id: str,
        amount: str,
        idempotency_key: str,
        *,
        confirmed: Movement,
    ) -> dict[str, Any]:
        return await self._move(
            confirmed,
            "transfer_between_accounts",
            from_account_id=from_account_id,
            to_account_id=to_account_id,
            amount=amount,
            idempotency_key=idempotency_key,
        )

    async def update_notification_settings(
        self,
        low_balance_alert: bool | None = None,
        low_balance_threshold: str | None = None,
        large_payment_alert: bool | None = None,
        channel: str | None = None,
    ) -> dict[str, Any]:
        return await self._call(
            "update_notification_settings",
            low_balance_alert=low_balance_alert,
            low_balance_threshold=low_balance_threshold,
            large_payment_alert=large_payment_alert,
            channel=channel,
        )

    def _http_client(
        self,
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
        **kwargs: Any,
    ) -> httpx2.AsyncClient:
        """The MCP client's HTTP client, on the shared pool; our timeout unless the client asks longer."""
        return httpx2.AsyncClient(
            transport=self._shared, headers=headers, auth=auth, timeout=timeout or self._timeout, **kwargs
        )

    async def _connected(self) -> Client[StreamableHttpTransport]:
        """The MCP client, opened at the first call (stateless: opening sends nothing)."""
        async with self._opening:
            if self._client is not None and not self._client.is_connected():
                await self._drop_client()  # it died with a call that reported why
            if self._client is None:
                transport = StreamableHttpTransport(
                    self._url, auth=self._auth, httpx_client_factory=self._http_client
                )
                client: Client[StreamableHttpTransport] = Client(transport, mode=PROTOCOL)
                stack = contextlib.AsyncExitStack()
                await stack.enter_async_context(client)
                self._client, self._closing = client, stack
                return client
            return self._client

    async def _drop_client(self) -> None:
        """Close the MCP client; a client that died is closed quietly: the call it failed reported why."""
        self._client = None
        stack, self._closing = self._closing, contextlib.AsyncExitStack()
        try:
            await stack.aclose()
        except _CALL_FAILED as exc:
            log.debug("closing a failed MCP client: %s", type(exc).__name__)

    async def _move(self, confirmed: Movement, tool: str, **arguments: Any) -> dict[str, Any]:
        """A payment or transfer under a token bound to `confirmed`, the movement the user confirmed.

        The call's arguments travel separately from the token's binding: should they ever differ, the MCP
        server refuses the call (`NotAuthorized`) and nothing moves.
        """

        async def renew() -> AccessToken:
            try:
                return await self._tokens.transact_access(confirmed)
            except InteractionRequired:
                raise ServiceUnavailable(_UNVERIFIED) from None

        try:
            access = await self._tokens.transact_access(confirmed)
        except InteractionRequired:
            request = await self._tokens.request_approval(confirmed)
            log.info("%s waits for the user's approval in their banking app", tool)
            raise ApprovalRequired(_Approval(self, confirmed, request, tool, arguments)) from None
        return await self._send(tool, ToolBearer(TRANSACT, access, renew, self._dpop), arguments)

    async def _call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        # A span per tool call: its token request and its MCP request are the children.
        with self._tracer.start_as_current_span(f"tool {tool}", attributes={"voicebank.tool": tool}):
            return await self._call_traced(tool, arguments)

    async def _call_traced(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        scope = TOOL_SCOPES[tool]

        async def renew() -> AccessToken:
            self._tokens.invalidate(scope, first.token)
            return await self._tokens.get_access(scope)

        # Issuer trouble raises its own typed error here, before any MCP traffic.
        first = await self._tokens.get_access(scope)
        return await self._send(tool, ToolBearer(scope, first, renew, self._dpop), arguments)

    async def _send(self, tool: str, bearer: ToolBearer, arguments: dict[str, Any]) -> dict[str, Any]:
        sent = {name: value for name, value in arguments.items() if value is not None}
        # The request itself, not `call_tool_mcp`: that revalidates every result against the tool's
        # output schema and so lists the tools first, a second request (and token check) per call.
        # Our own server answers; `_outcome` checks the shape we use.
        request = mcp_types.CallToolRequest(params=mcp_types.CallToolRequestParams(name=tool, arguments=sent))
        try:
            # Opened before this call's bearer is set: the client's own tasks never see a call's token.
            client = await self._connected()
            # The request carries this span's traceparent and this call's token (`_ToolCallAuth`).
            with self._tracer.start_as_current_span(f"mcp tools/call {tool}", kind=trace.SpanKind.CLIENT):
                current = self._bearer.set(bearer)
                try:
                    result = await client.session.send_request(request, mcp_types.CallToolResult)
                finally:
                    self._bearer.reset(current)
        except _CALL_FAILED as exc:
            raise _failure(tool, bearer, exc) from None
        return _outcome(tool, result)


class _Approval:
    """A movement waiting for approval: `outcome()` polls, then makes it with the approved token."""

    def __init__(
        self,
        bank: McpBank,
        movement: Movement,
        request: BackchannelRequest,
        tool: str,
        arguments: dict[str, Any],
    ) -> None:
        self.movement = movement
        self._bank = bank
        self._request = request
        self._tool = tool
        self._arguments = arguments

    async def outcome(self) -> dict[str, Any]:
        access = await self._bank._tokens.await_approval(self._request)
        # An approved token cannot be replaced without a new approval: no retry on 401.
        bearer = ToolBearer(TRANSACT, access, None, self._bank._dpop)
        return await self._bank._send(self._tool, bearer, self._arguments)


def _failure(tool: str, bearer: ToolBearer, exc: Exception) -> Exception:
    """Name what went wrong from what the bearer saw: the MCP SDK hides HTTP statuses."""
    if bearer.error is not None:
        return bearer.error
    if bearer.status == 403 and bearer.challenge == "insufficient_authorization_details":
        log.warning("MCP server refused %s: not the movement its token is bound to", tool)
        return NotAuthorized()
    if bearer.status == 403:
        log.warning("MCP server refused %s: insufficient_scope", tool)
        return ToolRefused(_FORBIDDEN)
    if bearer.status == 401:
        log.warning("MCP server rejected a fresh %s token for %s", bearer.scope, tool)
        return ServiceUnavailable(_UNVERIFIED)
    log.warning("MCP call %s failed: %s", tool, type(exc).__name__)
    return ServiceUnavailable(_UNREACHABLE)


def _outcome(tool: str, result: mcp_types.CallToolResult) -> dict[str, Any]:
    """The tool's JSON object, or `ToolRefused` with the sentence the tool said."""
    texts = [block.text for block in result.content if isinstance(block, mcp_types.TextContent)]
    text = " ".join(texts).strip()
    if result.is_error:
        log.info("MCP tool %s refused the call", tool)
        raise ToolRefused(text or "The bank refused that request.")
    data = result.structured_content
    if isinstance(data, dict):
        return data
    log.error("MCP tool %s answered without a JSON object", tool)
    raise ServiceUnavailable(_UNREADABLE)
