"""The issuer as it runs: served by uvicorn, other signing algorithms, jwks_uri clients, Redis outages."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from issuer import IssuerSettings
from issuer._metrics import IssuerMetrics
from issuer._signing._key_events import KeyEvents
from issuer._signing._rotation import RotationLoop
from keys import FileKeyStore, KeyPair, RotationPolicy, StaticKeys, Verifier, VerifyPolicy
from orchestrator._commands._serve import issuer_server, serve_all
from tests.support.clock import FakeClock
from tests.support.issuer import ISSUER, RESOURCE, running
from tests.support.ports import free_port
from tests.support.registry import TOKEN_EXCHANGE, client_registry
from tests.support.servers import RedisServer


async def test_serve_all_serves_and_stops_on_sigterm(make_settings: Callable[..., IssuerSettings]) -> None:
    port = free_port()
    server = issuer_server(make_settings(issuer_url=f"http://127.0.0.1:{port}"), host="127.0.0.1", port=port)
    server.config.log_level = "warning"
    started: list[bool] = []
    task = asyncio.create_task(serve_all([server], started=lambda: started.append(server.started)))
    while not started:  # yields to the loop until every server listens; no wall-clock wait
        assert not task.done()
        await asyncio.sleep(0)
    assert started == [True]  # once, after uvicorn listens
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).status_code == 200
    os.kill(os.getpid(), signal.SIGTERM)  # serve_all's handler stops every server
    await asyncio.wait_for(task, timeout=10)
    assert server.should_exit
    assert started == [True]


@pytest.mark.parametrize("alg", ["EdDSA", "RS256"])
async def test_other_signing_algorithms(
    make_settings: Callable[..., IssuerSettings], clock: FakeClock, client_keys: dict[str, KeyPair], alg: str
) -> None:
    async with running(make_settings(issuer_signing_alg=alg), clock, client_keys) as h:
        token = (await h.login())["access_token"]
        jwks = (await h.http.get("/.well-known/jwks.json")).json()
        assert {k["alg"] for k in jwks["keys"]} == {alg}
        Verifier(StaticKeys(jwks), VerifyPolicy(ISSUER, RESOURCE), clock=clock).verify(token)


async def test_a_client_registered_by_jwks_uri(
    make_settings: Callable[..., IssuerSettings],
    clock: FakeClock,
    client_keys: dict[str, KeyPair],
    tmp_path: Path,
) -> None:
    data = client_registry(client_keys)
    entry = next(c for c in data["clients"] if c["client_id"] == "orchestrator")
    jwks = entry.pop("jwks")
    entry["jwks_uri"] = "https://agent.example/jwks.json"

    async def serve_jwks(_: object) -> JSONResponse:
        return JSONResponse(jwks, headers={"Cache-Control": "max-age=300"})

    client_jwks = Starlette(routes=[Route("/jwks.json", serve_jwks)])
    path = tmp_path / "uri-clients.json"
    path.write_text(json.dumps(data))
    transport = httpx.ASGITransport(app=client_jwks)
    async with running(
        make_settings(issuer_clients_file=path), clock, client_keys, http_transport=transport
    ) as h:
        grant = (await h.session())["session_grant"]
        # A jwks_uri client names itself with client_id: its kid is not known before the fetch.
        response = await h.token(
            "orchestrator",
            client_id="orchestrator",
            grant_type=TOKEN_EXCHANGE,
            subject_token=grant,
            subject_token_type="urn:ietf:params:oauth:token-type:jwt",
        )
        assert response.status_code == 200, response.text
        # Without client_id the assertion's kid names no registered inline key.
        refused = await h.refresh(response.json()["refresh_token"])
        assert refused.status_code == 401


async def test_regression_an_unreachable_client_jwks_is_503_not_invalid_client(
    make_settings: Callable[..., IssuerSettings],
    clock: FakeClock,
    client_keys: dict[str, KeyPair],
    tmp_path: Path,
) -> None:
    # keys.KeysUnavailable is no longer a TokenError (issue 10): an outage must not read as a bad assertion.
    data = client_registry(client_keys)
    entry = next(c for c in data["clients"] if c["client_id"] == "orchestrator")
    entry.pop("jwks")
    entry["jwks_uri"] = "https://agent.example/jwks.json"

    async def down(_: object) -> JSONResponse:
        return JSONResponse({}, status_code=503)

    path = tmp_path / "uri-clients.json"
    path.write_text(json.dumps(data))
    transport = httpx.ASGITransport(app=Starlette(routes=[Route("/jwks.json", down)]))
    async with running(
        make_settings(issuer_clients_file=path), clock, client_keys, http_transport=transport
    ) as h:
        grant = (await h.session())["session_grant"]
        response = await h.token(
            "orchestrator",
            client_id="orchestrator",
            grant_type=TOKEN_EXCHANGE,
            subject_token=grant,
            subject_token_type="urn:ietf:params:oauth:token-type:jwt",
        )
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "temporarily_unavailable"


async def test_redis_outage_is_503_never_500(
    make_settings: Callable[..., IssuerSettings],
    clock: FakeClock,
    client_keys: dict[str, KeyPair],
    redis_url: str,
    redis_server: RedisServer,
) -> None:
    async with running(make_settings(redis_url=redis_url), clock, client_keys) as h:
        body = await h.login()
        redis_server.stop()
        try:
            ready = await h.http.get("/readyz")
            assert ready.status_code == 503
            response = await h.refresh(body["refresh_token"])
            assert response.status_code == 503
            assert response.json()["error"] == "temporarily_unavailable"
        finally:
            redis_server.start()
        assert (await h.http.get("/readyz")).status_code == 200


async def test_a_key_store_outage_in_the_schedule_is_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "keys"
    blocked.write_text("not a directory")  # the store cannot be read: every tick fails
    ticks = 0

    async def sleep(_: float) -> None:
        nonlocal ticks
        ticks += 1
        if ticks == 3:
            raise asyncio.CancelledError

    store = FileKeyStore(blocked, passphrase=None, policy=RotationPolicy(period=60, max_token_lifetime=60))
    metrics = IssuerMetrics()
    loop = RotationLoop(
        store, clock=lambda: 0.0, interval=30, events=KeyEvents(None, store_publishes=False), metrics=metrics,
        sleep=sleep,
    )  # fmt: skip
    with pytest.raises(asyncio.CancelledError):
        await loop.run()
    failures = [r for r in caplog.records if r.name == "issuer.rotation"]
    assert [r.levelname for r in failures] == ["WARNING", "WARNING"]
    assert all(r.exc_info is None for r in failures)
    assert "key_store_unavailable" in failures[0].getMessage()
