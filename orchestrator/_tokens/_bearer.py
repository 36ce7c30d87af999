"""The bearer of one MCP tool call: its token on every request, one replacement on 401."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Awaitable, Callable

import httpx2

from orchestrator._bank._protocol import BankError

Renew = Callable[[], Awaitable[str]]
"""Fetch a replacement token after a 401 (None: the token cannot be replaced, e.g. an approved one)."""


class ToolBearer(httpx2.Auth):
    """`Authorization: Bearer` for one tool call's MCP session (FastMCP's client speaks httpx2).

    The token is fetched before the session opens, so issuer failures surface as typed errors
    rather than as MCP transport noise. On the first 401 a new token is fetched with `renew` and the
    same request is resent once: same body, so a payment keeps its idempotency key. What happened is
    recorded here because the MCP SDK turns any HTTP error status into an opaque JSON-RPC error.
    """

    def __init__(self, scope: str, token: str, renew: Renew | None) -> None:
        self.scope = scope
        self._token = token
        self._renew = renew
        self.retried = False
        self.status: int | None = None  # the last HTTP error status the MCP server answered
        self.challenge: str | None = None  # the `error` of its WWW-Authenticate challenge
        self.error: BankError | None = None  # the token manager's error during the forced refresh

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code == 401 and not self.retried and self._renew is not None:
            self.retried = True
            try:
                self._token = await self._renew()
            except BankError as exc:
                self.error = exc
                self.status = 401
                return
            request.headers["Authorization"] = f"Bearer {self._token}"
            response = yield request
        if response.status_code in (401, 403):
            self.status = response.status_code
            self.challenge = _challenge_error(response.headers.get("www-authenticate", ""))


_ERROR = re.compile(r'error="([a-z_]{1,64})"')


def _challenge_error(header: str) -> str | None:
    """The `error` parameter of an RFC 6750 challenge (a bounded, linear match)."""
    match = _ERROR.search(header[:1024])
    return match.group(1) if match else None
