"""The issuer as tests run it: settings, the app in-process through httpx.ASGITransport, a harness."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from issuer import IssuerSettings, create_app, metrics_app
from keys import KeyPair, assertion_form, generate_key
from tests.support.clock import FakeClock
from tests.support.lifespan import running as lifespan_running
from tests.support.registry import CIBA, TOKEN_EXCHANGE, write_client_registry

ISSUER = "http://127.0.0.1:8000"
TOKEN_ENDPOINT = ISSUER + "/token"
RESOURCE = "http://127.0.0.1:8001/mcp"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
# The orchestrator tests' two clients (the issuer tests make their own per session).
CLIENT_KEYS = {name: generate_key("ES256") for name in ("orchestrator", "backend")}


async def never(_: float) -> None:
    """A rotation-loop sleep that never returns: tests drive `tick()` themselves."""
    await asyncio.Event().wait()


def issuer_settings(state: Path, clients_file: Path, **overrides: Any) -> IssuerSettings:
    """Settings of an issuer on loopback with file keys under `state`: no Redis, no LiveKit, dev mode.

    Every field is given, so nothing from the developer's environment leaks in; `overrides` win.
    """
    values: dict[str, Any] = {
        "issuer_url": ISSUER,
        "mcp_resource_url": RESOURCE,
        "voicebank_state": state,
        "issuer_clients_file": clients_file,
        "keys_store": "file",
        "redis_url": None,
        "keys_passphrase": None,
        "voicebank_mode": "dev",
        "livekit_url": None,
        "livekit_api_key": None,
        "livekit_api_secret": None,
    }
    return IssuerSettings(**(values | overrides))


def issuer_with_clients(state: Path, keys: Mapping[str, KeyPair], **overrides: Any) -> IssuerSettings:
    """`issuer_settings` for `state`, with the clients of `keys` registered in `state/clients.json`."""
    return issuer_settings(state, write_client_registry(state / "clients.json", keys), **overrides)


def payment(**members: Any) -> str:
    """An `authorization_details` parameter for one payment; arguments replace members, None drops one."""
    entry: dict[str, Any] = {
        "type": "payment",
        "from_account_id": "acc_checking",
        "payee_id": "pay_jane",
        "amount": "25.00",
        "currency": "USD",
        "idempotency_key": "key-1",
    }
    entry.update(members)
    return json.dumps([{k: v for k, v in entry.items() if v is not None}])


def transfer(**members: Any) -> str:
    """An `authorization_details` parameter for one transfer; keyword arguments replace members."""
    entry: dict[str, Any] = {
        "type": "transfer",
        "from_account_id": "acc_checking",
        "to_account_id": "acc_savings",
        "amount": "25.00",
        "currency": "USD",
        "idempotency_key": "key-1",
    }
    entry.update(members)
    return json.dumps([{k: v for k, v in entry.items() if v is not None}])


@dataclass
class Harness:
    """One running issuer app and the test's view of it."""

    app: FastAPI
    http: httpx.AsyncClient
    clock: FakeClock
    keys: dict[str, KeyPair]
    issued: list[str] = field(default_factory=list)
    """Every token, grant, refresh token and client assertion this harness saw (for secrecy checks)."""

    def auth(self, client_id: str, *, audience: str = TOKEN_ENDPOINT) -> dict[str, str]:
        form = assertion_form(client_id, self.keys[client_id], audience, self.clock())
        self.issued.append(form["client_assertion"])
        return form

    async def token(self, client: str, /, **params: str) -> httpx.Response:
        response = await self.http.post("/token", data={**params, **self.auth(client)})
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

    async def transact(
        self, refresh_token: str, details: str, client_id: str = "orchestrator", **params: str
    ) -> httpx.Response:
        """The refresh grant for a `transact` token bound to `details`."""
        return await self.refresh(
            refresh_token, client_id, scope="transact", authorization_details=details, **params
        )

    async def bc_authorize(
        self, sid: str, details: str, client_id: str = "orchestrator", **params: str
    ) -> httpx.Response:
        form = {"scope": "transact", "login_hint": sid, "authorization_details": details, **params}
        form.setdefault("binding_message", "Pay 25.00 USD to Jane")
        return await self.http.post("/bc-authorize", data={**form, **self.auth(client_id)})

    async def approvals(self, user_id: str = "alice") -> httpx.Response:
        bearer = await self.bearer("backend", "approvals:decide")
        return await self.http.get(
            "/approvals", params={"user_id": user_id}, headers={"Authorization": f"Bearer {bearer}"}
        )

    async def decide(self, auth_req_id: str, decision: str) -> httpx.Response:
        bearer = await self.bearer("backend", "approvals:decide")
        return await self.http.post(
            f"/approvals/{auth_req_id}",
            json={"decision": decision},
            headers={"Authorization": f"Bearer {bearer}"},
        )

    async def poll(self, auth_req_id: str, client_id: str = "orchestrator") -> httpx.Response:
        return await self.token(client_id, grant_type=CIBA, auth_req_id=auth_req_id)

    async def metrics(self) -> str:
        """What the metrics listener serves (`metrics_app`: never the public port)."""
        transport = httpx.ASGITransport(app=metrics_app(self.app))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8002") as http:
            response = await http.get("/metrics")
        assert response.status_code == 200
        return response.text

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
    async with lifespan_running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            yield Harness(app, http, clock, keys)
