"""Fixtures of the issuer tests; the harness itself lives in issuer_harness.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from issuer import IssuerSettings
from keys import KeyPair, generate_key
from tests.issuer.issuer_harness import FakeClock, Harness, registry_data, running


@pytest.fixture(scope="session")
def client_keys() -> dict[str, KeyPair]:
    return {name: generate_key("ES256") for name in ("orchestrator", "backend", "admin", "other")}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_settings(tmp_path: Path, client_keys: dict[str, KeyPair]) -> Callable[..., IssuerSettings]:
    clients_file = tmp_path / "clients.json"
    clients_file.write_text(json.dumps(registry_data(client_keys)))

    def make(**overrides: Any) -> IssuerSettings:
        values: dict[str, Any] = {
            "voicebank_state": tmp_path,
            "issuer_clients_file": clients_file,
            "keys_store": "file",
            "redis_url": None,
            "keys_passphrase": None,
            "voicebank_mode": "dev",
            "livekit_url": None,
            "livekit_api_key": None,
            "livekit_api_secret": None,
        }
        values.update(overrides)
        return IssuerSettings(**values)

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
