"""W3C Trace Context at the issuer: a server span per request, joined to the caller's `traceparent`.

Audit lines read their `trace_id` from the span current while a request runs. Span names use the
route template (`POST /admin/keys/{kid}/revoke`), never client text; `http.url` loses its query string.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import Span, TracerProvider

from issuer._http._routes import route_template


def _without_query(span: Span, scope: dict[str, Any]) -> None:
    # A token sent as `?access_token=...` by a misbehaving client must not travel on in a span.
    if span.is_recording():
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        span.set_attribute("http.url", f"{scope.get('scheme', 'http')}://{host}{scope.get('path', '')}")


def trace_requests(app: FastAPI, provider: TracerProvider) -> None:
    """Wrap `app` so every HTTP request runs in a server span of `provider`."""

    def span_details(scope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        method = str(scope.get("method", "HTTP"))
        template = route_template(app.router.routes, scope)
        return (f"{method} {template}" if template else method), {}

    app.add_middleware(
        OpenTelemetryMiddleware,
        tracer_provider=provider,
        meter_provider=NoOpMeterProvider(),  # metrics are Prometheus, on the metrics listener
        exclude_spans=["receive", "send"],
        default_span_details=span_details,
        server_request_hook=_without_query,
    )
