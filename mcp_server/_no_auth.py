"""Benchmarks only: every MCP request runs as one fixed principal, with no bearer auth at all."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_server._auth._principal import SCOPE_KEY, SPENT_KEY, Principal


class FixedPrincipalMiddleware:
    """Puts `principal` in the scope of every request to the MCP path; never use it in production."""

    def __init__(self, app: ASGIApp, *, path: str, principal: Principal) -> None:
        self._app = app
        self._paths = {path.rstrip("/") or "/", path.rstrip("/") + "/"}
        self._principal = principal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self._paths:
            scope[SCOPE_KEY] = self._principal
            scope[SPENT_KEY] = False  # nothing spent a transact jti: money-moving tools stay refused
        await self._app(scope, receive, send)
