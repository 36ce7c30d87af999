"""The orchestrator's trace context: `traceparent` of the current span, spans exported only over OTLP."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from opentelemetry.sdk.trace import TracerProvider

from orchestrator._tracing import trace_headers, tracer, tracer_provider


class Collector(HTTPServer):
    """An OTLP/HTTP receiver on loopback that keeps what it was sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receive)
        self.received: list[tuple[str, bytes]] = []
        self.arrived = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Receive(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.received.append((self.path, body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
        self.server.arrived.set()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_trace_headers_carry_the_current_span_as_w3c_traceparent() -> None:
    assert trace_headers() == {}  # outside a trace nothing is sent
    with tracer(TracerProvider()).start_as_current_span("call") as span:
        headers = trace_headers()
    context = span.get_span_context()
    flags = int(context.trace_flags)
    assert headers["traceparent"] == f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"
    assert flags & 1  # sampled


def test_spans_go_to_the_otlp_endpoint_only_when_one_is_set(collector: Collector) -> None:
    provider = tracer_provider("voicebank-test", collector.url + "/")
    with tracer(provider).start_as_current_span("voice_call"):
        pass
    assert provider.force_flush(10_000)
    assert collector.arrived.wait(10)
    ((path, body),) = collector.received
    assert path == "/v1/traces"
    assert b"voice_call" in body
    assert b"voicebank-test" in body  # the service name travels as a resource attribute
    provider.shutdown()

    quiet = tracer_provider("voicebank-test", None)
    with tracer(quiet).start_as_current_span("voice_call"):
        pass
    assert quiet.force_flush(1_000)
    quiet.shutdown()
    assert len(collector.received) == 1


def test_a_worker_process_installs_one_global_provider_and_keeps_it() -> None:
    # In a child process: the global provider can be set once per process, and tests share theirs.
    script = (
        "from opentelemetry import trace\n"
        "from orchestrator._tracing import install_tracer_provider, tracer\n"
        "first = install_tracer_provider('voicebank-agent', None)\n"
        "assert install_tracer_provider('voicebank-agent', None) is first\n"
        "assert trace.get_tracer_provider() is first\n"
        "with tracer().start_as_current_span('voice_call') as span:\n"
        "    assert span.get_span_context().is_valid\n"
        "print(first.resource.attributes['service.name'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "voicebank-agent"
