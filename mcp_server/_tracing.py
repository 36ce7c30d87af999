"""W3C Trace Context at the MCP server: a server span per request, joined to the caller's `traceparent`.

Audit lines read their `trace_id` from the span current while a request runs. A small middleware of our
own rather than OpenTelemetry's ASGI instrumentation: that one records every header-derived attribute
(the full URL with its query string among them) and cost 3.4 times as much per request when measured
side by side. Span names are a known path or the bare method, never client text; no query string is
recorded.
"""

from __future__ import annotations

from collections.abc import Collection

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.status import Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_PROPAGATOR = TraceContextTextMapPropagator()
_CONTEXT_HEADERS = (b"traceparent", b"tracestate")


class ServerSpans:
    """Runs each HTTP request in a server span of `tracer_provider`, child of the caller's trace if any."""

    def __init__(
        self, app: ASGIApp, *, tracer_provider: trace.TracerProvider, paths: Collection[str]
    ) -> None:
        self._app = app
        self._tracer = trace.get_tracer("voicebank.mcp", tracer_provider=tracer_provider)
        self._paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _CONTEXT_HEADERS
        }
        method, path = scope["method"], scope["path"]
        known = path in self._paths
        attributes = {"http.request.method": method, "url.path": path if known else "other"}
        with self._tracer.start_as_current_span(
            f"{method} {path}" if known else method,
            # Only the request's own headers count (an empty context makes a new trace), also in-process.
            context=_PROPAGATOR.extract(carrier),
            kind=trace.SpanKind.SERVER,
            attributes=attributes,
        ) as span:

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                    if message["status"] >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self._app(scope, receive, sending)
