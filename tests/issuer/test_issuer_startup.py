"""Settings, the client registry file and startup errors; the rotation loop driven without sleeping."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from issuer import (
    ClientRegistry,
    ClientRegistryError,
    IssuerSettings,
    IssuerStartupError,
    create_app,
    issuer_state,
)
from keys import KeyPair
from tests.support.clock import FakeClock
from tests.support.issuer import running
from tests.support.registry import client_registry


def test_prod_needs_a_passphrase() -> None:
    with pytest.raises(ValidationError, match="KEYS_PASSPHRASE must be set"):
        IssuerSettings(voicebank_mode="prod", keys_passphrase=None)


def test_redis_key_store_needs_redis_url() -> None:
    with pytest.raises(ValidationError, match="REDIS_URL"):
        IssuerSettings(keys_store="redis", redis_url=None)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ISSUER_URL", "https://issuer.example")
    monkeypatch.setenv("VOICEBANK_STATE", str(tmp_path))
    monkeypatch.setenv("KEYS_ROTATION_PERIOD", "3600")
    settings = IssuerSettings()
    assert settings.token_endpoint == "https://issuer.example/token"
    assert settings.clients_file == tmp_path / "clients.json"
    assert settings.keys_rotation_period == 3600


def test_registry_loads_yaml(tmp_path: Path, client_keys: dict[str, KeyPair]) -> None:
    path = tmp_path / "clients.yaml"
    path.write_text(yaml.safe_dump(client_registry(client_keys)))
    registry = ClientRegistry.load(path)
    orchestrator = registry.get("orchestrator")
    assert orchestrator is not None
    assert orchestrator.scopes == {"read", "transact", "configure"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(clients="x"), "clients"),
        (lambda d: d["clients"][0].pop("jwks"), "exactly one of jwks and jwks_uri"),
        (lambda d: d["clients"][0].update(scope="read fly"), "unknown scopes"),
        (lambda d: d["clients"][0].update(grant_types=["password"]), "grant_types"),
        (lambda d: d["clients"].append(dict(d["clients"][0])), "registered twice"),
        (lambda d: d["clients"][1].update(jwks=d["clients"][0]["jwks"]), "reuses another client's kid"),
        (lambda d: d["clients"][0]["jwks"]["keys"][0].update(d="AAAA"), "private members"),
        (lambda d: d["clients"][0]["jwks"]["keys"][0].update(x="!!"), "invalid public key"),
    ],
)
def test_invalid_registry_is_a_clear_error(
    tmp_path: Path, client_keys: dict[str, KeyPair], mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = json.loads(json.dumps(client_registry(client_keys)))
    mutate(data)
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ClientRegistryError, match=message) as info:
        ClientRegistry.load(path)
    assert "\n" not in str(info.value)


def test_unreadable_or_unparsable_registry(tmp_path: Path) -> None:
    with pytest.raises(ClientRegistryError, match="cannot read"):
        ClientRegistry.load(tmp_path / "missing.json")
    bad = tmp_path / "clients.json"
    bad.write_text("{")
    with pytest.raises(ClientRegistryError, match="not valid JSON"):
        ClientRegistry.load(bad)


async def test_app_startup_fails_clearly_without_a_registry(
    make_settings: Callable[..., IssuerSettings], tmp_path: Path, clock: FakeClock
) -> None:
    app = create_app(make_settings(issuer_clients_file=tmp_path / "none.json"), clock=clock)
    with pytest.raises(IssuerStartupError, match="dev-init"):
        async with app.router.lifespan_context(app):
            pass


async def test_app_startup_fails_clearly_on_a_wrong_passphrase(
    make_settings: Callable[..., IssuerSettings], clock: FakeClock, client_keys: dict[str, KeyPair]
) -> None:
    async with running(make_settings(keys_passphrase="one"), clock, client_keys):
        pass
    app = create_app(make_settings(keys_passphrase="two"), clock=clock)
    with pytest.raises(IssuerStartupError, match="key ring"):
        async with app.router.lifespan_context(app):
            pass


async def test_rotation_loop_runs_on_its_injected_sleep(
    make_settings: Callable[..., IssuerSettings], clock: FakeClock, client_keys: dict[str, KeyPair]
) -> None:
    ticks: asyncio.Queue[float] = asyncio.Queue()
    slept = asyncio.Event()

    async def sleep(seconds: float) -> None:
        slept.set()
        await ticks.get()

    app = create_app(make_settings(rotation_tick=30), clock=clock, rotation_sleep=sleep)
    async with app.router.lifespan_context(app):
        state = issuer_state(app)
        before = (await state.store.current()).signing_key().kid
        clock.advance(86400 + 1)
        await slept.wait()
        slept.clear()
        ticks.put_nowait(0)  # let one tick run
        await slept.wait()  # the loop is back to sleeping: the tick finished
        assert (await state.store.current()).signing_key().kid != before
