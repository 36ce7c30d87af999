"""W3C Trace Context for the orchestrator: its tracer, `traceparent` on outgoing requests, the span exporter.

A voice call is one trace (`VoiceCall`), each tool call a span in it (`McpBank`), and every issuer and
MCP request carries the `traceparent` of the span it runs under, so the issuer's and the MCP server's
audit lines of one call share its trace id. Components take an optional `TracerProvider`; without one
they use OpenTelemetry's global provider, which the worker process sets (`install_tracer_provider`).
Spans leave the process only over OTLP, and only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["TRACER_NAME", "install_tracer_provider", "trace_headers", "tracer", "tracer_provider"]

TRACER_NAME = "voicebank.orchestrator"
_PROPAGATOR = TraceContextTextMapPropagator()


def tracer(provider: trace.TracerProvider | None = None) -> trace.Tracer:
    """The orchestrator's tracer, from `provider` or the global one."""
    return trace.get_tracer(TRACER_NAME, tracer_provider=provider)


def trace_headers() -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the current span; empty outside a trace."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


def tracer_provider(service: str, otlp_endpoint: str | None) -> TracerProvider:
    """A provider naming `service`; it exports over OTLP/HTTP only when an endpoint is given."""
    provider = TracerProvider(resource=Resource({"service.name": service}))
    if otlp_endpoint:
        # Imported only when used: the exporter pulls in protobuf and requests.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # OTEL_EXPORTER_OTLP_ENDPOINT is the collector's base URL; traces go to /v1/traces under it.
        exporter = OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def install_tracer_provider(service: str, otlp_endpoint: str | None) -> trace.TracerProvider:
    """Make a provider the process's global one unless one is set already (a worker's job process)."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = tracer_provider(service, otlp_endpoint)
    trace.set_tracer_provider(provider)
    return provider
