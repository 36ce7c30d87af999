"""A voice call with DPoP through the production wiring: the real issuer and MCP server in-process.

Every issuer and MCP request of a call carries a proof by the call's own in-memory key; nonce challenges
cost one retry; a token lifted from the call is worthless without the key; two hours of calling cost the
issuer no more requests than bearer tokens did, and the key is never written anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from freezegun import freeze_time
from sqlalchemy import Engine
from starlette.applications import Starlette

import keys
from issuer import create_app as create_issuer
from keys import assertion_form, dpop_proof, generate_key, unverified_header
from mcp_server import McpSettings, create_schema, make_engine, seed
from mcp_server._app import create_app as create_mcp
from orchestrator._bank._movement import Movement
from orchestrator._call._identity import CallerIdentity
from orchestrator._call._wiring import CallBank, ConnectionSettings, close_bank, open_bank
from tests.support.issuer import CLIENT_KEYS, ISSUER, issuer_with_clients
from tests.support.lifespan import running

RESOURCE = "http://127.0.0.1:8001/mcp"
MCP_HEADERS = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28"}


def _wall_clock() -> float:
    return time.time()  # looked up per call: freezegun moves it


async def _never(_: float) -> None:
    await asyncio.Event().wait()


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


@dataclass
class Seen:
    """One request on a wire, as the server got it and answered it."""

    path: str
    headers: dict[str, list[str]]
    form: dict[str, str]
    status: int
    answer: dict[str, Any]


class IssuerWire(httpx.AsyncBaseTransport):
    """The orchestrator's wire to the issuer: every request and answer recorded."""

    def __init__(self, app: FastAPI) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.seen: list[Seen] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.multi_items():
            headers.setdefault(name.lower(), []).append(value)
        answer = json.loads(body) if body else {}
        self.seen.append(Seen(request.url.path, headers, form, response.status_code, answer))
        return httpx.Response(response.status_code, headers=response.headers, content=body)

    def grants(self) -> list[Seen]:
        """The `/token` requests of the call (token exchange and refreshes)."""
        return [
            s for s in self.seen if s.path == "/token" and s.form.get("grant_type") != "client_credentials"
        ]


class McpWire(httpx2.AsyncBaseTransport):
    """The orchestrator's wire to the MCP server."""

    def __init__(self, app: Starlette) -> None:
        self.inner = httpx2.ASGITransport(app=app)
        self.seen: list[Seen] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.multi_items():
            headers.setdefault(name.lower(), []).append(value)
        self.seen.append(Seen(request.url.path, headers, {}, response.status_code, {}))
        return httpx2.Response(response.status_code, headers=response.headers, content=body)

    async def aclose(self) -> None:
        return None


@dataclass
class Call:
    """Issuer and MCP server in-process, and the production wiring opening calls against them."""

    issuer_http: httpx.AsyncClient
    issuer_wire: IssuerWire
    mcp_app: Starlette
    state: Path
    mcp_wires: list[McpWire] = field(default_factory=list)

    async def identity(self, scope: str = "read transact configure", user: str = "alice") -> CallerIdentity:
        auth = assertion_form("backend", CLIENT_KEYS["backend"], f"{ISSUER}/token", time.time())
        answer = await self.issuer_http.post(
            f"{ISSUER}/token", data={"grant_type": "client_credentials", "scope": "sessions:create", **auth}
        )
        created = await self.issuer_http.post(
            f"{ISSUER}/sessions",
            json={"user_id": user, "scope": scope},
            headers={"Authorization": f"Bearer {answer.json()['access_token']}"},
        )
        assert created.status_code == 201, created.text
        body = created.json()
        self.issuer_wire.seen.clear()
        return CallerIdentity(user, body["session_id"], body["session_grant"])

    async def open(self) -> CallBank:
        wire = McpWire(self.mcp_app)
        self.mcp_wires.append(wire)
        settings = ConnectionSettings(
            issuer_url=ISSUER, mcp_url=RESOURCE, orchestrator_client_key=self.state / "orchestrator.pem"
        )
        bank = await open_bank(
            settings, await self.identity(), issuer_transport=self.issuer_wire, mcp_transport=wire
        )
        assert isinstance(bank, CallBank)
        return bank


def _bound_registry(state: Path, *, nonce: str) -> Any:
    settings = issuer_with_clients(state, CLIENT_KEYS, mcp_resource_url=RESOURCE)
    clients = json.loads((state / "clients.json").read_text())
    for client in clients["clients"]:
        if client["client_id"] == "orchestrator":
            client["dpop_bound_access_tokens"] = True
    (state / "clients.json").write_text(json.dumps(clients))
    (state / "orchestrator.pem").write_bytes(CLIENT_KEYS["orchestrator"].private_pem(None))
    return settings.model_copy(update={"dpop_nonce": nonce})


def _build(tmp_path: Path, nonce: str) -> tuple[FastAPI, Engine, McpSettings]:
    state = tmp_path / "issuer"
    state.mkdir()
    settings = issuer_with_clients(state, CLIENT_KEYS, mcp_resource_url=RESOURCE).model_copy(
        update={"dpop_nonce": nonce}
    )
    clients = json.loads((state / "clients.json").read_text())
    for client in clients["clients"]:
        if client["client_id"] == "orchestrator":
            client["dpop_bound_access_tokens"] = True  # as compose.yaml registers it
    (state / "clients.json").write_text(json.dumps(clients))
    (state / "orchestrator.pem").write_bytes(CLIENT_KEYS["orchestrator"].private_pem(None))
    engine = make_engine(f"sqlite:///{tmp_path / 'bank.db'}")
    create_schema(engine)
    seed(engine)
    mcp_settings = McpSettings(
        mcp_issuer_url=ISSUER,
        mcp_resource_url=RESOURCE,
        voicebank_state=tmp_path,
        redis_url=None,
        mcp_require_dpop=True,
        dpop_nonce=nonce,
    )
    issuer_app = create_issuer(settings, clock=_wall_clock, rotation_sleep=_never)
    return issuer_app, engine, mcp_settings


@contextlib.asynccontextmanager
async def _serving(tmp_path: Path, built: tuple[FastAPI, Engine, McpSettings]) -> AsyncIterator[Call]:
    issuer_app, engine, mcp_settings = built
    wire = IssuerWire(issuer_app)
    async with issuer_app.router.lifespan_context(issuer_app), httpx.AsyncClient(transport=wire) as http:
        jwks = keys.JWKSCache(f"{ISSUER}/.well-known/jwks.json", http, clock=_wall_clock)
        policy = keys.VerifyPolicy(issuer=ISSUER, audience=RESOURCE)
        verifier = keys.Verifier(jwks, policy, clock=_wall_clock)
        mcp_app = create_mcp(mcp_settings, verifier=verifier, engine=engine, clock=_wall_clock)
        try:
            async with running(mcp_app):
                yield Call(http, wire, mcp_app, tmp_path / "issuer")
        finally:
            engine.dispose()


@pytest.fixture
async def call(tmp_path: Path) -> AsyncIterator[Call]:
    async with _serving(tmp_path, _build(tmp_path, "off")) as running_call:
        yield running_call


@pytest.fixture
async def nonce_call(tmp_path: Path) -> AsyncIterator[Call]:
    async with _serving(tmp_path, _build(tmp_path, "required")) as running_call:
        yield running_call


def dpop_jkt(bank: CallBank) -> str:
    assert bank.dpop is not None
    return bank.dpop.jkt


def _proof_key(proof: str) -> str:
    """The thumbprint of the key a proof names."""
    return keys.thumbprint(unverified_header(proof)["jwk"])


async def _use(bank: CallBank) -> None:
    accounts = (await bank.get_balance())["accounts"]
    checking = next(a["account_id"] for a in accounts if a["type"] == "checking")
    payee = (await bank.list_payees())["payees"][0]["payee_id"]
    key = f"dpop-{time.time()}"
    confirmed = Movement("payment", checking, payee, "3.00", "USD", key)
    paid = await bank.make_payment(checking, payee, "3.00", key, confirmed=confirmed)
    assert paid["status"] == "completed"
    await bank.update_notification_settings(low_balance_alert=True)


async def test_every_request_of_a_call_proves_the_calls_key(call: Call) -> None:
    bank = await call.open()
    jkt = dpop_jkt(bank)
    await _use(bank)
    grants = call.issuer_wire.grants()
    assert len(grants) == 3  # the exchange (read), a refresh for transact, one for configure

    for seen in grants:
        assert len(seen.headers["dpop"]) == 1
        assert _proof_key(seen.headers["dpop"][0]) == jkt
        assert seen.answer["token_type"] == "DPoP"
        assert _claims(seen.answer["access_token"])["cnf"] == {"jkt": jkt}
    sent = call.mcp_wires[0].seen
    assert sent
    proofs = [s.headers["dpop"][0] for s in sent]
    assert all(s.headers["authorization"][0].startswith("DPoP ") for s in sent)
    assert all(_proof_key(p) == jkt for p in proofs)
    assert len(set(proofs)) == len(proofs)  # a fresh proof for every request
    assert all(s.status < 400 for s in sent)
    await close_bank(CallerIdentity("alice", "x", "g"), bank)


async def test_each_call_has_its_own_key(call: Call) -> None:
    first, second = await call.open(), await call.open()
    assert dpop_jkt(first) != dpop_jkt(second)
    await first.end()
    await second.end()


async def test_nonce_challenges_are_answered_once(nonce_call: Call) -> None:
    bank = await nonce_call.open()
    await _use(bank)
    statuses = [s.status for s in nonce_call.issuer_wire.grants()]
    # One challenge for the whole call: every answer carries the nonce the next request uses.
    assert statuses[:2] == [400, 200]
    assert statuses.count(400) == 1
    mcp = [s.status for s in nonce_call.mcp_wires[0].seen]
    assert mcp[0] == 401
    assert mcp.count(401) == 1
    assert all(status < 400 for status in mcp[1:])
    await bank.end()


async def test_a_token_lifted_from_the_call_is_refused_without_the_key(call: Call) -> None:
    bank = await call.open()
    await bank.get_balance()
    lifted = call.mcp_wires[0].seen[-1]
    token = lifted.headers["authorization"][0].removeprefix("DPoP ")
    body = {
        "jsonrpc": "2.0",
        "id": 9,
        "method": "tools/call",
        "params": {"name": "get_balance", "arguments": {}},
    }
    headers = MCP_HEADERS | {"mcp-method": "tools/call", "mcp-name": "get_balance"}
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=call.mcp_app)) as thief:
        as_bearer = await thief.post(
            RESOURCE, json=body, headers=headers | {"authorization": f"Bearer {token}"}
        )
        assert as_bearer.status_code == 401
        own_key = dpop_proof(
            generate_key("ES256"), htm="POST", htu=RESOURCE, now=time.time(), access_token=token
        )
        with_own_key = await thief.post(
            RESOURCE, json=body, headers=headers | {"authorization": f"DPoP {token}", "dpop": own_key}
        )
        assert with_own_key.status_code == 401
        assert 'error="invalid_dpop_proof"' in with_own_key.headers["www-authenticate"]
        replayed = await thief.post(
            RESOURCE,
            json=body,
            headers=headers | {"authorization": f"DPoP {token}", "dpop": lifted.headers["dpop"][0]},
        )
        assert replayed.status_code == 401  # the proof that came with it was spent
    # The refresh token lifted from the issuer's answer is as useless.
    refresh_token = call.issuer_wire.grants()[0].answer["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    form |= assertion_form("orchestrator", CLIENT_KEYS["orchestrator"], f"{ISSUER}/token", time.time())
    stolen = await call.issuer_http.post(
        f"{ISSUER}/token",
        data=form,
        headers={
            "DPoP": dpop_proof(generate_key("EdDSA"), htm="POST", htu=f"{ISSUER}/token", now=time.time())
        },
    )
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_dpop_proof"
    # ...and the call goes on: nothing of its family was spent or revoked.
    assert (await bank.list_loans())["loans"] is not None
    assert await bank.end()


def _secrets_of(bank: CallBank) -> list[bytes]:
    """Every encoding of the call key's private scalar someone could write down."""
    assert bank.dpop is not None
    private_key = bank.dpop._key.private_key  # the test reads its own call's key, to look for it
    assert isinstance(private_key, ec.EllipticCurvePrivateKey)
    scalar = private_key.private_numbers().private_value.to_bytes(32, "big")
    der = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # The PKCS#8 DER of a P-256 key starts with 36 fixed bytes (48 base64 characters), then the scalar.
    scalar_in_pem = b"".join(pem.splitlines()[1:-1])[48:88]
    return [
        scalar,
        scalar.hex().encode(),
        base64.urlsafe_b64encode(scalar).rstrip(b"="),
        base64.b64encode(scalar).rstrip(b"="),
        der,
        scalar_in_pem,
    ]


@pytest.mark.parametrize("nonce", ["off", "required"])
async def test_two_hour_call_with_dpop(tmp_path: Path, caplog: pytest.LogCaptureFixture, nonce: str) -> None:
    built = _build(tmp_path, nonce)  # apps are built before freezing (FastAPI imports lazily)
    caplog.set_level(logging.DEBUG)
    with freeze_time("2026-03-01 09:00:00", real_asyncio=True) as frozen:
        async with _serving(tmp_path, built) as world:
            bank = await world.open()
            secrets = _secrets_of(bank)
            for _ in range(7200 // 60 + 1):  # t = 0, 60, ..., 7200: a read tool every minute
                await bank.get_balance()
                frozen.tick(60)
            grants = world.issuer_wire.grants()
            # Exactly what bearer tokens cost: the exchange, then one refresh each 240 s. With nonces, one
            # challenge more for the whole call at each server: every answer carries the next nonce, and a
            # nonce lives at least one 300 s window, longer than the 240 s between refreshes.
            challenges = 1 if nonce == "required" else 0
            assert 30 + challenges <= len(grants) <= 31 + challenges
            assert [s.status for s in grants].count(400) == challenges
            assert {_proof_key(s.headers["dpop"][0]) for s in grants} == {dpop_jkt(bank)}
            assert [s.status for s in world.mcp_wires[0].seen if s.status >= 400] == [401] * challenges
            second = await world.open()
            assert dpop_jkt(second) != dpop_jkt(bank)  # one fresh key per call
            assert await bank.end()
            assert await second.end()
    written = [path for path in tmp_path.rglob("*") if path.is_file()]  # noqa: ASYNC240 - after the call
    assert written  # the issuer's keys and clients, the bank database
    logs = caplog.text.encode()
    for secret in secrets:
        assert secret not in logs
        for path in written:
            assert secret not in path.read_bytes(), path
    for seen in world.issuer_wire.seen + world.mcp_wires[0].seen:
        sent = json.dumps(seen.headers).encode() + json.dumps(seen.form).encode()
        assert not any(secret in sent for secret in secrets)
