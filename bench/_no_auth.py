"""Benchmarks only: the MCP server app with its bearer auth replaced by one fixed caller.

The production factory (`mcp_server.create_app`) carries no switch for this: the bench takes the app it
builds and swaps the one bearer-auth middleware for `FixedPrincipalMiddleware` before the app first runs,
so every other part (routes, the tools, their scope and jti locks) is the production app's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_server._auth._metadata import resource_path
from mcp_server._auth._middleware import BearerAuthMiddleware
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


def without_auth(app: Starlette, resource_url: str, claims: Mapping[str, Any]) -> Starlette:
    """`app`, not started yet, with its bearer-auth middleware replaced by a fixed caller from `claims`."""
    fixed = Middleware(
        FixedPrincipalMiddleware, path=resource_path(resource_url), principal=Principal.from_claims(claims)
    )
    # Middleware.cls is typed as a factory protocol; what is compared here is the class object itself.
    bearer: object = BearerAuthMiddleware
    stack = [fixed if entry.cls is bearer else entry for entry in app.user_middleware]
    if sum(entry.cls is bearer for entry in app.user_middleware) != 1:
        raise RuntimeError("the MCP app has no single bearer-auth middleware to replace")
    app.user_middleware = stack
    return app
