"""Prometheus metrics of one issuer app, on its own registry, served apart from the public port."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def _registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


@dataclass
class IssuerMetrics:
    registry: CollectorRegistry = field(default_factory=_registry)

    def __post_init__(self) -> None:
        self.tokens_issued = Counter(
            "issuer_tokens_issued", "Tokens issued, by grant type", ["grant_type"], registry=self.registry
        )
        self.errors = Counter(
            "issuer_errors", "Requests refused, by error code and internal reason", ["code", "reason"],
            registry=self.registry,
        )  # fmt: skip
        self.rotations = Counter(
            "issuer_key_rotations", "Key rotations done by this replica", registry=self.registry
        )
        self.revocations = Counter(
            "issuer_key_revocations", "Keys revoked through this replica", registry=self.registry
        )

    def app(self) -> Starlette:
        """An app answering `GET /metrics` in the Prometheus text format, and nothing else."""

        async def endpoint(_request: Request) -> Response:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

        return Starlette(routes=[Route("/metrics", endpoint, methods=["GET"])])
