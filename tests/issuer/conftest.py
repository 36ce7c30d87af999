"""Fixtures of the issuer tests; the harness itself lives in tests/support/issuer.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from issuer import IssuerSettings
from keys import KeyPair, generate_key
from tests.support.clock import FakeClock
from tests.support.issuer import Harness, issuer_settings, running
from tests.support.registry import write_client_registry


@pytest.fixture(scope="session")
def client_keys() -> dict[str, KeyPair]:
    return {name: generate_key("ES256") for name in ("orchestrator", "backend", "admin", "other")}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_settings(tmp_path: Path, client_keys: dict[str, KeyPair]) -> Callable[..., IssuerSettings]:
    clients_file = write_client_registry(tmp_path / "clients.json", client_keys)

    def make(**overrides: Any) -> IssuerSettings:
        return issuer_settings(tmp_path, clients_file, **overrides)

    return make


@pytest.fixture
async def issuer(
    make_settings: Callable[..., IssuerSettings], clock: FakeClock, client_keys: dict[str, KeyPair]
) -> AsyncIterator[Harness]:
    async with running(make_settings(), clock, client_keys) as harness:
        yield harness


@pytest.fixture(params=["memory", "redis"])
async def h(
    request: pytest.FixtureRequest,
    make_settings: Callable[..., IssuerSettings],
    clock: FakeClock,
    client_keys: dict[str, KeyPair],
) -> AsyncIterator[Harness]:
    """A running issuer once with in-process stores and once with a real Redis (`REDIS_URL`)."""
    overrides: dict[str, Any] = {}
    if request.param == "redis":
        overrides["redis_url"] = request.getfixturevalue("redis_url")
    async with running(make_settings(**overrides), clock, client_keys) as harness:
        yield harness
