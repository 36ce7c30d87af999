"""Prometheus metrics of one app, in its own registry, served apart from the public port.

Every name starts with `voicebank_mcp_`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


class JwksStats(Protocol):
    """What `keys.JWKSCache` tells about its fetches."""

    fetch_count: int
    failure_count: int
    fetched_at: float | None


class _JwksCollector(Collector):
    """Reads the JWKS cache at scrape time: fetches, failures and the age of the keys it serves."""

    def __init__(self, cache: JwksStats, clock: Callable[[], float]) -> None:
        self._cache = cache
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "voicebank_mcp_jwks_fetches", "JWKS fetches started (refreshes and unknown kids).",
            value=self._cache.fetch_count,
        )  # fmt: skip
        yield CounterMetricFamily(
            "voicebank_mcp_jwks_fetch_failures", "JWKS fetches that failed.", value=self._cache.failure_count
        )
        age = GaugeMetricFamily(
            "voicebank_mcp_jwks_age_seconds", "Seconds since the issuer last confirmed the cached keys."
        )
        if self._cache.fetched_at is not None:
            age.add_metric([], max(0.0, self._clock() - self._cache.fetched_at))
        yield age


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

        self.replay_operations = Counter(
            "voicebank_mcp_replay_operations",
            "Single-use checks, by kind (transact token, DPoP proof) and outcome",
            ["kind", "outcome"],
            registry=self.registry,
        )

    def observe_replay(self, key: str, outcome: str) -> None:
        """Count one single-use check: a transact token's jti, or a DPoP proof's (`dpop:` keys)."""
        self.replay_operations.labels("proof" if key.startswith("dpop:") else "transact", outcome).inc()

    def watch_jwks(self, cache: JwksStats, clock: Callable[[], float]) -> None:
        """Report the JWKS cache's fetches, failures and age."""
        self.registry.register(_JwksCollector(cache, clock))

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
