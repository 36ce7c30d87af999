"""Prometheus metrics of one app, in its own registry, served apart from the public port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


class Metrics:
    """Verification outcomes by reason and tool latency by outcome."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.verifications = Counter(
            "voicebank_mcp_token_verifications",
            "Bearer token checks at the MCP endpoint.",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.tool_latency = Histogram(
            "voicebank_mcp_tool_latency_seconds",
            "Time spent running a tool.",
            ["tool", "outcome"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )

    async def endpoint(self, _request: Request) -> Response:
        """`GET /metrics` in the Prometheus text format."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def app(self) -> Starlette:
        """An app answering `GET /metrics`, and nothing else."""
        return Starlette(routes=[Route("/metrics", self.endpoint, methods=["GET"])])


def metrics_app(app: Starlette) -> Starlette:
    """`GET /metrics` of the MCP app `app`, for a loopback listener of its own (never the public port)."""
    metrics: Metrics = app.state.metrics
    return metrics.app()
