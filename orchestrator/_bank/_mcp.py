"""`McpBank`: the `Bank` protocol as stateless MCP requests, each tool under its own scope's token."""

from __future__ import annotations

import importlib.metadata
import itertools
import logging
from typing import Any

import httpx2
import mcp_types
import orjson
from mcp_types.methods import parse_server_result
from opentelemetry import trace
from pydantic import ValidationError

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

# The stateless protocol: one tool call is one HTTP request (no initialize, no session to lose).
PROTOCOL = "2026-07-28"
# What every request says about its client (the protocol's per-request `_meta`, in place of initialize).
_META = {
    "io.modelcontextprotocol/protocolVersion": PROTOCOL,
    "io.modelcontextprotocol/clientInfo": {
        "name": "voicebank-orchestrator",
        "version": importlib.metadata.version("voicebank"),
    },
    "io.modelcontextprotocol/clientCapabilities": {},
}
_HEADERS = {
    "accept": "application/json, text/event-stream",
    "content-type": "application/json",
    "mcp-protocol-version": PROTOCOL,
    "mcp-method": "tools/call",
}
# The connection broke before an answer came (the MCP server restarted mid-call); not a timeout.
_BROKEN = (httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.WriteError)
# How a request fails to complete: a transport error (refused, broken, timed out) or an answer we cannot
# read. Anything else is a bug in our code and propagates instead of being reported as "can't reach the bank".
_CALL_FAILED = (httpx2.HTTPError, TimeoutError)
_MAX_REDIRECTS = 5
# The largest answer read (a JSON body or one event of a stream): ours are a few kB.
_MAX_ANSWER = 1 << 20


class _ResendOnce(httpx2.AsyncBaseTransport):
    """The connection pool of every tool call; a request whose connection broke is resent once."""

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
        await self._inner.aclose()


class _Unreadable(Exception):
    """The MCP server answered with something that is not a JSON-RPC answer to our request."""


class McpBank:
    """The banking tools of the MCP server at `url`, called for the session whose tokens `tokens` holds.

    Each tool call is one stateless MCP request (protocol 2026-07-28: no initialize, no session): one
    JSON-RPC `tools/call` POST carrying a token of exactly that tool's scope, sent by this class itself
    (the MCP SDK's client session would pass it through its message streams and task groups, ~0.4 ms of
    CPU per call, for a protocol that is one request and one answer). All calls share one connection
    pool: an MCP server restart costs nothing more than a new TCP connection, and a call it broke is
    resent once.
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
        self._url = httpx2.URL(url)
        self._http = httpx2.AsyncClient(
            transport=_ResendOnce(transport if transport is not None else httpx2.AsyncHTTPTransport()),
            timeout=httpx2.Timeout(timeout, connect=connect_timeout),
        )
        self._ids = itertools.count(1)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

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
        request_id = next(self._ids)
        # A value that cannot be sent raises here (TypeError): our bug, not an unreachable bank.
        body = orjson.dumps(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "tools/call",
                "params": {"name": tool, "arguments": sent, "_meta": _META},
            }
        )
        # Our tool names are plain ASCII identifiers: the `Mcp-Name` header carries them verbatim.
        headers = _HEADERS | {"mcp-name": tool}
        try:
            # The request carries this span's traceparent and this call's token (`ToolBearer`).
            with self._tracer.start_as_current_span(f"mcp tools/call {tool}", kind=trace.SpanKind.CLIENT):
                response = await self._post(body, headers | trace_headers(), bearer)
                answer = await _answer(response, request_id)
        except _CALL_FAILED as exc:
            raise _failure(tool, bearer, exc) from None
        except _Unreadable as exc:
            log.error("MCP tool %s: %s", tool, exc)
            raise ServiceUnavailable(_UNREADABLE) from None
        if answer is None:
            raise _failure(tool, bearer, None)
        return _outcome(tool, answer)

    async def _post(self, body: bytes, headers: dict[str, str], bearer: ToolBearer) -> httpx2.Response:
        """POST the request, following a redirect only within the server's origin (as the MCP SDK does)."""
        request = self._http.build_request("POST", self._url, content=body, headers=headers)
        for _ in range(_MAX_REDIRECTS):
            response = await self._http.send(request, auth=bearer, stream=True)
            follow = _within_origin(response)
            if follow is None:
                return response
            await response.aread()
            await response.aclose()
            request = follow
        return await self._http.send(request, auth=bearer, stream=True)


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


def _within_origin(response: httpx2.Response) -> httpx2.Request | None:
    """The redirect to follow: same method (307/308), same origin, no userinfo of its own; else None."""
    follow = response.next_request
    if follow is None:
        return None
    sent = response.request
    if (
        follow.method != sent.method
        or follow.url.scheme != sent.url.scheme
        or follow.url.host != sent.url.host
        or follow.url.port != sent.url.port
        or follow.url.userinfo != sent.url.userinfo
    ):
        return None
    return follow


async def _answer(response: httpx2.Response, request_id: int) -> mcp_types.CallToolResult | None:
    """The tool call's result from the server's answer (JSON, or an event stream), None for an error.

    An HTTP error status and a JSON-RPC error are both None: `_failure` names them from what the bearer saw.
    """
    try:
        if response.status_code != 200:
            return None
        content_type = response.headers.get("content-type", "").lower()
        if content_type.startswith("application/json"):
            return _result(await _read(response), request_id)
        if content_type.startswith("text/event-stream"):
            # The server's notifications come first (progress, logs: we ask for none); the answer ends it.
            async for event in httpx2.EventSource(response, max_event_size=_MAX_ANSWER):
                if event.event == "message" and event.data:
                    message = orjson.loads(event.data)
                    # An answer has an id and no method (a request of the server's would have both).
                    if isinstance(message, dict) and "id" in message and "method" not in message:
                        return _result(message, request_id)
            raise _Unreadable("the event stream ended without an answer")
        raise _Unreadable(f"unexpected content type {content_type[:64]!r}")
    except orjson.JSONDecodeError:
        raise _Unreadable("the answer is not JSON") from None
    finally:
        await response.aclose()


async def _read(response: httpx2.Response) -> bytes:
    """The answer's body, refused beyond `_MAX_ANSWER` before it is all read."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > _MAX_ANSWER:
            raise _Unreadable(f"an answer larger than {_MAX_ANSWER} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _result(message: bytes | dict[str, Any], request_id: int) -> mcp_types.CallToolResult | None:
    """The `CallToolResult` of a JSON-RPC answer to `request_id`, validated as the MCP SDK validates it."""
    if isinstance(message, bytes):
        message = orjson.loads(message)
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or message.get("id") != request_id:
        raise _Unreadable("not a JSON-RPC answer to our request")
    if "error" in message:
        error = message["error"]
        log.warning(
            "MCP server answered a JSON-RPC error %s", error.get("code") if isinstance(error, dict) else ""
        )
        return None
    result = message.get("result")
    if not isinstance(result, dict):
        raise _Unreadable("a JSON-RPC answer without a result")
    try:
        parsed = parse_server_result("tools/call", PROTOCOL, result)
    except ValidationError:
        raise _Unreadable("the result is not a tools/call result") from None
    if not isinstance(parsed, mcp_types.CallToolResult):
        raise _Unreadable("the server asked for input we cannot give")
    return parsed


def _failure(tool: str, bearer: ToolBearer, exc: Exception | None) -> Exception:
    """Name what went wrong from what the bearer saw (the HTTP status and challenge of the answer)."""
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
    log.warning("MCP call %s failed: %s", tool, type(exc).__name__ if exc is not None else "an error answer")
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
