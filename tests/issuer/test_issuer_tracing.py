"""Server spans at the issuer: joined to the caller's traceparent, named by route, never carrying a query."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from issuer import IssuerSettings
from keys import KeyPair
from tests.support.clock import FakeClock
from tests.support.issuer import running

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


async def test_server_spans_join_the_caller_and_hide_query_strings_and_ids(
    make_settings: Callable[..., IssuerSettings], clock: FakeClock, client_keys: dict[str, KeyPair]
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traced = {"traceparent": f"00-{TRACE_ID}-{PARENT}-01"}
    async with running(make_settings(), clock, client_keys, tracer_provider=provider) as h:
        await h.http.get("/.well-known/jwks.json?access_token=SECRET-IN-QUERY", headers=traced)
        await h.http.post("/admin/keys/some-kid-from-a-client/revoke", headers=traced)
        await h.http.get("/no/such/path/SECRET-IN-PATH")

    spans = exporter.get_finished_spans()
    names = [span.name for span in spans]
    assert names == ["GET /.well-known/jwks.json", "POST /admin/keys/{kid}/revoke", "GET"]
    jwks, revoke, unknown = spans
    for span in (jwks, revoke):
        assert format(span.context.trace_id, "032x") == TRACE_ID
        assert span.parent is not None
        assert format(span.parent.span_id, "016x") == PARENT
    assert unknown.parent is None  # no traceparent: a trace of its own
    recorded = repr([dict(span.attributes or {}) for span in spans])
    assert "SECRET-IN-QUERY" not in recorded
    assert "access_token" not in recorded
