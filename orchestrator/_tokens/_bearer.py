"""The credentials of one MCP tool call: its token on every request, one replacement on 401."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Awaitable, Callable

import httpx2

from orchestrator._bank._protocol import BankError
from orchestrator._tokens._dpop import CallKey, nonce_challenge
from orchestrator._tokens._manager import AccessToken

Renew = Callable[[], Awaitable[AccessToken]]
"""Fetch a replacement token after a 401 (None: the token cannot be replaced, e.g. an approved one)."""


class ToolBearer(httpx2.Auth):
    """`Authorization: DPoP` with a fresh proof (or `Bearer`) for one tool call's MCP request.

    `McpBank` sends its requests with httpx2. The token is fetched before the request is sent, so issuer
    failures surface as typed errors rather than as MCP transport noise. A bound token goes out as
    `Authorization: DPoP <token>` with a `DPoP` proof of this very request (`htm`, `htu`, `ath`) signed by
    the call's key; a `use_dpop_nonce` challenge is answered once with the server's nonce. On the first
    other 401 a new token is fetched with `renew` and the same request is resent once: same body, so a
    payment keeps its idempotency key. What happened is recorded here: `McpBank` names a failed call
    from the last HTTP status and challenge this flow saw.
    """

    def __init__(
        self, scope: str, access: AccessToken, renew: Renew | None, dpop: CallKey | None = None
    ) -> None:
        self.scope = scope
        self._access = access
        self._renew = renew
        self._dpop = dpop
        self.retried = False
        self.status: int | None = None  # the last HTTP error status the MCP server answered
        self.challenge: str | None = None  # the `error` of its WWW-Authenticate challenge
        self.error: BankError | None = None  # the token manager's error during the forced refresh

    def _authorize(self, request: httpx2.Request) -> None:
        access = self._access
        request.headers["Authorization"] = f"{access.scheme} {access.token}"
        if access.scheme == "DPoP" and self._dpop is not None:
            url = str(request.url)
            request.headers["DPoP"] = self._dpop.proof(request.method, url, access_token=access.token)
        else:
            request.headers.pop("DPoP", None)

    def _challenged(self, request: httpx2.Request, response: httpx2.Response) -> bool:
        """Learn the nonce an answer carries; True when the answer asks for a proof with it."""
        if self._dpop is None or not self._dpop.learn_nonce(str(request.url), response.headers):
            return False
        return nonce_challenge(response.status_code, response.headers, None)

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        self._authorize(request)
        response = yield request
        nonce_answered = False
        if self._challenged(request, response):
            nonce_answered = True
            self._authorize(request)
            response = yield request
        if response.status_code == 401 and not self.retried and self._renew is not None:
            self.retried = True
            try:
                self._access = await self._renew()
            except BankError as exc:
                self.error = exc
                self.status = 401
                return
            self._authorize(request)
            response = yield request
            if self._challenged(request, response) and not nonce_answered:
                self._authorize(request)
                response = yield request
        if response.status_code in (401, 403):
            self.status = response.status_code
            self.challenge = _challenge_error(response.headers.get("www-authenticate", ""))


_ERROR = re.compile(r'error="([a-z_]{1,64})"')


def _challenge_error(header: str) -> str | None:
    """The `error` parameter of an RFC 6750 / RFC 9449 challenge (a bounded, linear match)."""
    match = _ERROR.search(header[:1024])
    return match.group(1) if match else None
