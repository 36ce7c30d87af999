"""Fixtures for the MCP server tests: a seeded SQLite bank, real keys, and the app over in-process HTTP."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine
from starlette.applications import Starlette

from keys import KeyPair, StaticKeys, Verifier, generate_key, sign
from mcp_server import Bank, McpSettings, access_token_policy, create_app, create_schema, make_engine, seed
from tests.support.clock import FakeClock
from tests.support.issuer import ISSUER, RESOURCE
from tests.support.lifespan import running
from tests.support.mcp import MCP_START, Mint, http_client, movement


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MCP_START)


@pytest.fixture
def engine(tmp_path: Path, clock: FakeClock) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'bank.db'}")
    create_schema(engine)
    seed(engine, clock=clock)
    yield engine
    engine.dispose()


@pytest.fixture
def bank(engine: Engine, clock: FakeClock) -> Bank:
    return Bank(engine, clock=clock)


@pytest.fixture(scope="session")
def signing_key() -> KeyPair:
    return generate_key("ES256")


@pytest.fixture
def settings(tmp_path: Path) -> McpSettings:
    return McpSettings(
        mcp_issuer_url=ISSUER, mcp_resource_url=RESOURCE, voicebank_state=tmp_path, redis_url=None
    )


@pytest.fixture
def verifier(signing_key: KeyPair, clock: FakeClock, settings: McpSettings) -> Verifier:
    keys = StaticKeys({"keys": [signing_key.public_jwk()]})
    return Verifier(keys, access_token_policy(settings), clock=clock)


@pytest.fixture
def mint(signing_key: KeyPair, clock: FakeClock) -> Mint:
    """Sign an access token for `sub` with `scope`; overrides and `claims` replace claims, `without` drops.

    `bound=(tool, arguments)` binds a transact token to exactly that call, as the issuer does.
    """

    def mint(sub: str = "alice", scope: str = "read", *, key: KeyPair | None = None, typ: str = "at+jwt",
             without: tuple[str, ...] = (), claims: dict[str, Any] | None = None,
             bound: tuple[str, dict[str, Any]] | None = None, **overrides: Any) -> str:  # fmt: skip
        now = int(clock())
        body: dict[str, Any] = {
            "iss": ISSUER,
            "sub": sub,
            "aud": RESOURCE,
            "iat": now,
            "nbf": now,
            "exp": now + (60 if scope == "transact" else 300),
            "jti": secrets.token_urlsafe(16),
            "client_id": "orchestrator",
            "scope": scope,
            "sid": "room-1",
            "act": {"sub": "orchestrator"},
        }
        if bound is not None:
            body["authorization_details"] = movement(*bound)
        body |= overrides | (claims or {})
        for name in without:
            body.pop(name, None)
        return sign(body, key or signing_key, typ=typ)

    return mint


@pytest.fixture
async def app(
    settings: McpSettings, verifier: Verifier, engine: Engine, clock: FakeClock
) -> AsyncIterator[Starlette]:
    app = create_app(settings, verifier=verifier, engine=engine, clock=clock)
    async with running(app):
        yield app


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx2.AsyncClient]:
    """A raw HTTP client to the app, for status codes and headers."""
    async with http_client(app) as client:
        yield client
