"""Issuer test harness: real keys, a fake clock, the app in-process through httpx.ASGITransport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from issuer import IssuerSettings, assertion_form, create_app
from keys import KeyPair, generate_key

ISSUER = "http://127.0.0.1:8000"
TOKEN_ENDPOINT = ISSUER + "/token"
RESOURCE = "http://127.0.0.1:8001/mcp"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
START = 1_800_000_000.0


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def never(_: float) -> None:
    """A rotation-loop sleep that never returns: tests drive `tick()` themselves."""
    await asyncio.Event().wait()


@pytest.fixture(scope="session")
def client_keys() -> dict[str, KeyPair]:
    return {name: generate_key("ES256") for name in ("orchestrator", "backend", "admin", "other")}


def registry_data(keys: dict[str, KeyPair]) -> dict[str, Any]:
    def jwks(name: str) -> dict[str, Any]:
        return {"keys": [keys[name].public_jwk()]}

    return {
        "clients": [
            {
                "client_id": "orchestrator",
                "jwks": jwks("orchestrator"),
                "grant_types": [TOKEN_EXCHANGE, "refresh_token"],
                "scope": "read transact configure",
            },
            {
                "client_id": "backend",
                "jwks": jwks("backend"),
                "grant_types": ["client_credentials"],
                "scope": "sessions:create",
            },
            {
                "client_id": "admin",
                "jwks": jwks("admin"),
                "grant_types": ["client_credentials"],
                "scope": "keys:admin",
            },
            {
                # A second agent-like client, to prove grants and refresh tokens are bound to their client.
                "client_id": "other",
                "jwks": jwks("other"),
                "grant_types": [TOKEN_EXCHANGE, "refresh_token"],
                "scope": "read",
            },
        ]
    }


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


@dataclass
class Harness:
    """One running issuer app and the test's view of it."""

    app: FastAPI
    http: httpx.AsyncClient
    clock: FakeClock
    keys: dict[str, KeyPair]
    issued: list[str] = field(default_factory=list)

    def auth(self, client_id: str, *, audience: str = TOKEN_ENDPOINT) -> dict[str, str]:
        return assertion_form(client_id, self.keys[client_id], audience, self.clock())

    async def token(self, client_id: str, **params: str) -> httpx.Response:
        response = await self.http.post("/token", data={**params, **self.auth(client_id)})
        if response.status_code == 200:
            body = response.json()
            self.issued += [body["access_token"], body.get("refresh_token", "")]
        return response

    async def bearer(self, client_id: str, scope: str) -> str:
        response = await self.token(client_id, grant_type="client_credentials", scope=scope)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def session(self, user_id: str = "alice", scope: str = "read transact configure") -> dict[str, Any]:
        bearer = await self.bearer("backend", "sessions:create")
        response = await self.http.post(
            "/sessions",
            json={"user_id": user_id, "scope": scope},
            headers={"Authorization": f"Bearer {bearer}"},
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        self.issued.append(body["session_grant"])
        return body

    async def exchange(self, grant: str, client_id: str = "orchestrator", **params: str) -> httpx.Response:
        return await self.token(
            client_id, grant_type=TOKEN_EXCHANGE, subject_token=grant, subject_token_type=JWT_TYPE, **params
        )

    async def refresh(
        self, refresh_token: str, client_id: str = "orchestrator", **params: str
    ) -> httpx.Response:
        return await self.token(client_id, grant_type="refresh_token", refresh_token=refresh_token, **params)

    async def login(self, scope: str = "read") -> dict[str, Any]:
        """A session exchanged by the orchestrator: the token response with its refresh token."""
        grant = (await self.session())["session_grant"]
        response = await self.exchange(grant, scope=scope)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@asynccontextmanager
async def running(
    settings: IssuerSettings, clock: FakeClock, keys: dict[str, KeyPair], **kwargs: Any
) -> AsyncIterator[Harness]:
    app = create_app(settings, clock=clock, rotation_sleep=never, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            yield Harness(app, http, clock, keys)


@pytest.fixture
async def issuer(
    make_settings: Callable[..., IssuerSettings], clock: FakeClock, client_keys: dict[str, KeyPair]
) -> AsyncIterator[Harness]:
    async with running(make_settings(), clock, client_keys) as harness:
        yield harness
