"""Prometheus metrics of one issuer app, on its own registry, served apart from the public port.

Every name starts with `voicebank_issuer_`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar, cast

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keys import KeyRing, KeyState, RotationPolicy

_M = TypeVar("_M", Counter, Histogram)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


class _RingCollector(Collector):
    """At scrape time: how long each active key has signed, and when the schedule promotes the next one."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.ring: KeyRing | None = None
        self.policy: RotationPolicy | None = None

    def collect(self) -> Iterator[Metric]:
        age = GaugeMetricFamily(
            "voicebank_issuer_key_age_seconds",
            "Seconds since the active key of each algorithm began to sign.",
            labels=["alg"],
        )
        due = GaugeMetricFamily(
            "voicebank_issuer_next_rotation_seconds",
            "Seconds until the scheduled rotation may promote the next key of each algorithm (0: due now).",
            labels=["alg"],
        )
        if self.ring is not None and self.policy is not None:
            now = self._clock()
            for alg in self.ring.algs:
                active = next(r for r in self.ring.records if r.alg == alg and r.state is KeyState.ACTIVE)
                started = active.activated_at if active.activated_at is not None else active.created_at
                age.add_metric([alg], max(0.0, now - started))
                upcoming = [r for r in self.ring.records if r.alg == alg and r.state is KeyState.NEXT]
                # A next key is promoted once the active one served its period and it was published
                # for `publish_ahead`; without a next key the schedule publishes one first.
                published = upcoming[0].created_at if upcoming else max(now, started + self.policy.period)
                at = max(started + self.policy.period, published + self.policy.publish_ahead)
                due.add_metric([alg], max(0.0, at - now))
        yield age
        yield due


@dataclass
class IssuerMetrics:
    registry: CollectorRegistry = field(default_factory=_registry)
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.tokens_issued = Counter(
            "voicebank_issuer_tokens_issued", "Tokens issued, by grant type", ["grant_type"],
            registry=self.registry,
        )  # fmt: skip
        self.errors = Counter(
            "voicebank_issuer_errors",
            "Requests refused, by error code and internal reason",
            ["code", "reason"],
            registry=self.registry,
        )
        self.rotations = Counter(
            "voicebank_issuer_key_rotations", "Key rotations done by this replica", registry=self.registry
        )
        self.revocations = Counter(
            "voicebank_issuer_key_revocations", "Keys revoked through this replica", registry=self.registry
        )
        self.latency = Histogram(
            "voicebank_issuer_request_seconds",
            "Time to answer a request, by endpoint (route template), grant type (on /token) and status",
            ["endpoint", "grant", "status"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.replay_operations = Counter(
            "voicebank_issuer_replay_operations",
            "Single-use identifier checks (client assertions, session grants), by kind and outcome",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self._ring = _RingCollector(self.clock)
        self.registry.register(self._ring)
        # The children of the per-request series, by label values: `labels()` validates and locks on every
        # call (a few µs a request). Every label value comes from our own code, never from a client, so
        # each map holds a handful of entries.
        self._children: dict[tuple[object, ...], Counter | Histogram] = {}

    def _child(self, metric: _M, *labels: str) -> _M:
        """`metric.labels(*labels)`, looked up once per label values."""
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return cast(_M, child)  # stored under its own metric, so of the metric's own type

    def issued(self, grant_type: str) -> None:
        """Count one token issued by a grant this issuer serves."""
        self._child(self.tokens_issued, grant_type).inc()

    def observe_replay(self, key: str, outcome: str) -> None:
        """Count one single-use check; its kind is the key's namespace (`assertion`, `grant`)."""
        self._child(self.replay_operations, key.partition(":")[0] or "other", outcome).inc()

    def observe_latency(self, endpoint: str, grant: str, status: int, seconds: float) -> None:
        """Time one request by its route template, its grant (on `/token`) and its status."""
        self._child(self.latency, endpoint, grant, str(status)).observe(seconds)

    def observe_ring(self, ring: KeyRing, policy: RotationPolicy | None = None) -> None:
        """The ring (and once, the rotation policy) the key-age and next-rotation gauges describe."""
        self._ring.ring = ring
        if policy is not None:
            self._ring.policy = policy

    def app(self) -> Starlette:
        """An app answering `GET /metrics` in the Prometheus text format, and nothing else."""

        async def endpoint(_request: Request) -> Response:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

        return Starlette(routes=[Route("/metrics", endpoint, methods=["GET"])])
