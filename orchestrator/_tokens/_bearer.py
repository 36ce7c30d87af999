"""The bearer of one MCP tool call: its scope's token on every request, one forced refresh on 401."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import httpx2

from orchestrator._bank._protocol import BankError
from orchestrator._tokens._manager import TokenManager


class ToolBearer(httpx2.Auth):
    """`Authorization: Bearer` for one tool call's MCP session (FastMCP's client speaks httpx2).

    The token is fetched before the session opens, so issuer failures surface as typed errors
    rather than as MCP transport noise. On the first 401 the token is invalidated, a new one is
    fetched and the same request is resent once: same body, so a payment keeps its idempotency
    key. What happened is recorded here because the MCP SDK turns any HTTP error status into an
    opaque JSON-RPC error.
    """

    def __init__(self, tokens: TokenManager, scope: str, token: str) -> None:
        self._tokens = tokens
        self.scope = scope
        self._token = token
        self.retried = False
        self.status: int | None = None  # the last HTTP error status the MCP server answered
        self.error: BankError | None = None  # the token manager's error during the forced refresh

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code == 401 and not self.retried:
            self.retried = True
            self._tokens.invalidate(self.scope, self._token)
            try:
                self._token = await self._tokens.get_token(self.scope)
            except BankError as exc:
                self.error = exc
                self.status = 401
                return
            request.headers["Authorization"] = f"Bearer {self._token}"
            response = yield request
        if response.status_code in (401, 403):
            self.status = response.status_code
