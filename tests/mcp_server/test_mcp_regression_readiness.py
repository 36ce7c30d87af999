"""Regressions: the MCP server says when it cannot serve (issue 10).

Found in review: the MCP server had only `/healthz`, so compose sent traffic to a replica that had no issuer
keys yet, or whose database or Redis was gone. `/readyz` answers 503 with the reason until the JWKS is usable
(tests/integration/test_int_regression_outages.py) and the database and Redis answer; `/healthz` stays
liveness.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import psycopg

from keys import Verifier
from mcp_server import McpSettings, create_app, create_schema, make_engine, seed
from tests.support.clock import FakeClock
from tests.support.issuer import ISSUER, RESOURCE
from tests.support.lifespan import running
from tests.support.mcp import http_client


async def probes(http: httpx2.AsyncClient) -> tuple[int, int, dict[str, Any]]:
    alive = await http.get("/healthz")
    ready = await http.get("/readyz")
    return alive.status_code, ready.status_code, ready.json()


async def test_readyz_is_200_when_everything_answers(http: httpx2.AsyncClient) -> None:
    assert await probes(http) == (200, 200, {"status": "ready"})


async def test_regression_readyz_is_503_while_the_database_refuses_connections(
    tmp_path: Path, postgres_url: str, verifier: Verifier, clock: FakeClock
) -> None:
    engine = make_engine(postgres_url)
    create_schema(engine)
    seed(engine, clock=clock)
    database = postgres_url.rsplit("/", 1)[1]
    admin = postgres_url.rsplit("/", 1)[0].replace("postgresql+psycopg", "postgresql") + "/postgres"
    settings = McpSettings(mcp_issuer_url=ISSUER, mcp_resource_url=RESOURCE, voicebank_state=tmp_path)
    app = create_app(settings, verifier=verifier, engine=engine, clock=clock)
    try:
        async with running(app), http_client(app) as http:
            assert await probes(http) == (200, 200, {"status": "ready"})
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")  # our hex name
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
                )
            assert await probes(http) == (
                200, 503, {"status": "unavailable", "reason": "database_unavailable"},
            )  # fmt: skip
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
            assert await probes(http) == (200, 200, {"status": "ready"})
    finally:
        engine.dispose()


async def test_regression_readyz_is_503_while_redis_is_down(
    tmp_path: Path, redis_url: str, redis_server: Any, verifier: Verifier, clock: FakeClock, engine: Any
) -> None:
    settings = McpSettings(
        mcp_issuer_url=ISSUER, mcp_resource_url=RESOURCE, voicebank_state=tmp_path, redis_url=redis_url
    )
    app = create_app(settings, verifier=verifier, engine=engine, clock=clock)
    async with running(app), http_client(app) as http:
        assert await probes(http) == (200, 200, {"status": "ready"})
        redis_server.stop()
        try:
            assert await probes(http) == (200, 503, {"status": "unavailable", "reason": "redis_unavailable"})
        finally:
            redis_server.start()
        assert await probes(http) == (200, 200, {"status": "ready"})
