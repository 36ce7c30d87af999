"""Request latency per endpoint and grant, into `voicebank_issuer_request_seconds`."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from issuer._http._routes import route_template


class RequestTiming:
    """Times every HTTP request of the issuer app; labels are the route template, the grant and the status.

    The grant comes from the request's audit record (`/token` names it once the form is read), so a
    refused request is timed under the grant it asked for.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, sending)
        finally:
            self._observe(scope, status, time.perf_counter() - start)

    @staticmethod
    def _observe(scope: Scope, status: int, elapsed: float) -> None:
        app: Any = scope.get("app")
        state = getattr(getattr(app, "state", None), "issuer", None)
        if state is None:  # before the lifespan started or after it ended
            return
        endpoint = route_template(app.router.routes, scope) or "other"
        decision = scope.get("state", {}).get("audit")
        event = getattr(decision, "event", "")
        grant = event.removeprefix("token.") if event.startswith("token.") else ""
        state.metrics.observe_latency(endpoint, grant, status, elapsed)
