"""The MCP server's request span: the one server span of a request, with FastMCP's own spans off beneath."""

from __future__ import annotations

from typing import Any

import httpx
from fastmcp.telemetry import native_spans_enabled
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mcp_server._tracing import ServerSpans


async def test_the_app_runs_in_our_server_span_with_fastmcps_own_spans_off() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        # What a FastMCP tool call beneath the middleware would find.
        seen["fastmcp_spans"] = native_spans_enabled()
        seen["span"] = trace.get_current_span().get_span_context()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    spans = ServerSpans(app, tracer_provider=provider, paths={"/mcp"})
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    transport = httpx.ASGITransport(app=spans)
    async with httpx.AsyncClient(transport=transport, base_url="http://mcp.test") as client:
        response = await client.post("/mcp", content=b"{}", headers={"traceparent": parent})
    assert response.status_code == 200
    assert seen["fastmcp_spans"] is False
    (span,) = exporter.get_finished_spans()
    assert span.name == "POST /mcp"
    assert span.context is not None
    assert seen["span"].span_id == span.context.span_id
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    # Outside a request FastMCP's switch is as it was: only requests beneath the span are affected.
    assert native_spans_enabled() is True
