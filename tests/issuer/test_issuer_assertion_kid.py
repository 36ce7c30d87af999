"""A client with one registered key may leave `kid` out of its assertion header (docs/architecture.md).

The product keeps sending a kid (keys.client_assertion); these tests build kid-less assertions by hand, sign
them with real keys and send them to the real issuer app, registered by inline `jwks` and by `jwks_uri`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from issuer import IssuerSettings
from keys import JWT_BEARER, KeyPair, client_assertion, generate_key, unverified_header
from keys._jose._b64 import b64url_encode
from keys._jose._sign import signature_bytes
from tests.support.clock import FakeClock
from tests.support.issuer import TOKEN_ENDPOINT, Harness, running
from tests.support.registry import client_registry

JWKS_URI = "https://clients.example/{}/jwks.json"
ADMIN_SCOPE = "keys:admin"


def signed(key: KeyPair, claims: dict[str, Any], **header: Any) -> str:
    """A compact JWS with exactly `header` (plus `alg`): no kid unless the test gives one."""
    head = b64url_encode(json.dumps({"alg": key.alg, **header}).encode())
    body = b64url_encode(json.dumps(claims).encode())
    signing_input = f"{head}.{body}"
    return f"{signing_input}.{b64url_encode(signature_bytes(key, signing_input.encode()))}"


def claims_of(h: Harness, client_id: str, **changes: Any) -> dict[str, Any]:
    now = int(h.clock())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_ENDPOINT,
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(8),
    }
    return {**claims, **changes}


def kidless(h: Harness, client_id: str, key: KeyPair, **changes: Any) -> str:
    token = signed(key, claims_of(h, client_id, **changes), typ="JWT")
    assert "kid" not in unverified_header(token)
    return token


async def admin_token(h: Harness, assertion: str, **form: str) -> httpx.Response:
    data = {
        "grant_type": "client_credentials",
        "scope": ADMIN_SCOPE,
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion,
        **form,
    }
    return await h.http.post("/token", data=data)


async def refused(h: Harness, response: httpx.Response, reason: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"]
    assert f'issuer_errors_total{{code="invalid_client",reason="{reason}"}}' in await h.metrics()


@pytest.fixture
def second_admin_key() -> KeyPair:
    return generate_key("ES256")


@pytest.fixture
def registry(client_keys: dict[str, KeyPair]) -> dict[str, Any]:
    return client_registry(client_keys)


def entry(registry: dict[str, Any], client_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in registry["clients"] if c["client_id"] == client_id)
    return found


@asynccontextmanager
async def issuer_with(
    registry: dict[str, Any],
    make_settings: Callable[..., IssuerSettings],
    clock: FakeClock,
    client_keys: dict[str, KeyPair],
    tmp_path: Path,
) -> AsyncIterator[tuple[Harness, list[str]]]:
    """The issuer with `registry`; `jwks_uri` clients are served their documents from the registry's `jwks`.

    A client entry may carry `served_jwks` (moved out before the file is written): the document its
    `jwks_uri` answers with. The list yielded records every JWKS request.
    """
    documents: dict[str, Any] = {}
    for client in registry["clients"]:
        if "served_jwks" in client:
            documents[client["client_id"]] = client.pop("served_jwks")
            client["jwks_uri"] = JWKS_URI.format(client["client_id"])
    fetched: list[str] = []

    async def serve(request: Request) -> JSONResponse:
        client_id = request.path_params["client_id"]
        fetched.append(client_id)
        return JSONResponse(documents[client_id], headers={"Cache-Control": "max-age=300"})

    jwks_app = Starlette(routes=[Route("/{client_id}/jwks.json", serve)])
    path = tmp_path / "kid-clients.json"
    path.write_text(json.dumps(registry))
    transport = httpx.ASGITransport(app=jwks_app)
    settings = make_settings(issuer_clients_file=path)
    async with running(settings, clock, client_keys, http_transport=transport) as h:
        yield h, fetched


def by_uri(registry: dict[str, Any], client_id: str, *keys: KeyPair) -> None:
    client = entry(registry, client_id)
    del client["jwks"]
    client["served_jwks"] = {"keys": [key.public_jwk() for key in keys]}


async def test_a_one_key_client_may_leave_kid_out(issuer: Harness, client_keys: dict[str, KeyPair]) -> None:
    key = client_keys["admin"]
    # Named by its equal `sub` and `iss` ...
    assert (await admin_token(issuer, kidless(issuer, "admin", key))).status_code == 200
    # ... or by the client_id parameter.
    named = await admin_token(issuer, kidless(issuer, "admin", key), client_id="admin")
    assert named.status_code == 200, named.text
    # Also with `aud` the issuer URL, and without `typ`.
    bare = signed(key, claims_of(issuer, "admin", aud="http://127.0.0.1:8000"))
    assert (await admin_token(issuer, bare)).status_code == 200


async def test_the_product_still_sends_a_kid(issuer: Harness, client_keys: dict[str, KeyPair]) -> None:
    assertion = client_assertion("admin", client_keys["admin"], TOKEN_ENDPOINT, issuer.clock())
    assert unverified_header(assertion)["kid"] == client_keys["admin"].kid


async def test_a_kidless_assertion_meets_every_other_check(
    issuer: Harness, client_keys: dict[str, KeyPair]
) -> None:
    key = client_keys["admin"]
    once = kidless(issuer, "admin", key)
    assert (await admin_token(issuer, once)).status_code == 200
    await refused(issuer, await admin_token(issuer, once), "assertion_replayed")
    await refused(
        issuer, await admin_token(issuer, kidless(issuer, "admin", key, aud="x")), "assertion_wrong_aud"
    )
    now = int(issuer.clock())
    late = kidless(issuer, "admin", key, iat=now - 600, exp=now - 300)
    await refused(issuer, await admin_token(issuer, late), "assertion_expired")
    long = kidless(issuer, "admin", key, exp=now + 301)
    await refused(issuer, await admin_token(issuer, long), "assertion_lifetime_too_long")
    no_jti = claims_of(issuer, "admin")
    del no_jti["jti"]
    await refused(issuer, await admin_token(issuer, signed(key, no_jti)), "assertion_missing_claim")
    with_jwk = signed(key, claims_of(issuer, "admin"), jwk=key.public_jwk())
    await refused(issuer, await admin_token(issuer, with_jwk), "assertion_forbidden_header")
    wrong_typ = signed(key, claims_of(issuer, "admin"), typ="at+jwt")
    await refused(issuer, await admin_token(issuer, wrong_typ), "assertion_wrong_typ")
    # The key decides the algorithm: a header naming another one is refused before the signature.
    other_alg = generate_key("EdDSA")
    await refused(
        issuer, await admin_token(issuer, kidless(issuer, "admin", other_alg)), "assertion_unsupported_alg"
    )
    big = kidless(issuer, "admin", key, pad="x" * 5000)
    await refused(issuer, await admin_token(issuer, big), "assertion_too_large")


async def test_the_client_is_named_by_equal_sub_and_iss(
    issuer: Harness, client_keys: dict[str, KeyPair]
) -> None:
    key = client_keys["admin"]
    split = kidless(issuer, "admin", key, iss="backend")
    await refused(issuer, await admin_token(issuer, split), "assertion_names_no_client")
    unnamed = kidless(issuer, "admin", key, sub=None, iss=None)
    await refused(issuer, await admin_token(issuer, unnamed), "assertion_names_no_client")
    stranger = kidless(issuer, "nobody", key)
    await refused(issuer, await admin_token(issuer, stranger), "unknown_client")
    duplicated = signed(key, {}, typ="JWT").split(".")
    body = '{"sub":"backend","sub":"admin","iss":"admin"}'
    duplicated[1] = b64url_encode(body.encode())
    await refused(issuer, await admin_token(issuer, ".".join(duplicated)), "assertion_malformed")


async def test_client_id_and_sub_must_agree(issuer: Harness, client_keys: dict[str, KeyPair]) -> None:
    # The parameter names admin, the assertion names backend: signed by either key, it is refused.
    for key in (client_keys["admin"], client_keys["backend"]):
        token = kidless(issuer, "backend", key)
        response = await admin_token(issuer, token, client_id="admin")
        assert response.status_code == 401, response.text
    # Only `sub` differs (iss is the named client): the signature verifies, `sub` does not match.
    token = kidless(issuer, "admin", client_keys["admin"], sub="backend")
    await refused(issuer, await admin_token(issuer, token, client_id="admin"), "assertion_wrong_sub")


async def test_a_kidless_assertion_signed_by_another_clients_key(
    issuer: Harness, client_keys: dict[str, KeyPair]
) -> None:
    forged = kidless(issuer, "admin", client_keys["backend"])
    await refused(issuer, await admin_token(issuer, forged), "assertion_bad_signature")
    forged = kidless(issuer, "admin", client_keys["backend"])
    await refused(issuer, await admin_token(issuer, forged, client_id="admin"), "assertion_bad_signature")


async def test_a_client_with_two_keys_must_send_a_kid(
    registry: dict[str, Any],
    make_settings: Callable[..., IssuerSettings],
    clock: FakeClock,
    client_keys: dict[str, KeyPair],
    second_admin_key: KeyPair,
    tmp_path: Path,
) -> None:
    entry(registry, "admin")["jwks"]["keys"].append(second_admin_key.public_jwk())
    async with issuer_with(registry, make_settings, clock, client_keys, tmp_path) as (h, _):
        for key in (client_keys["admin"], second_admin_key):
            await refused(h, await admin_token(h, kidless(h, "admin", key)), "assertion_kid_required")
            named = await admin_token(h, kidless(h, "admin", key), client_id="admin")
            assert named.status_code == 401
            # With its kid, each key still works.
            with_kid = signed(key, claims_of(h, "admin"), typ="JWT", kid=key.kid)
            assert (await admin_token(h, with_kid)).status_code == 200


async def test_a_jwks_uri_client_with_one_key_may_leave_kid_out(
    registry: dict[str, Any],
    make_settings: Callable[..., IssuerSettings],
    clock: FakeClock,
    client_keys: dict[str, KeyPair],
    tmp_path: Path,
) -> None:
    by_uri(registry, "admin", client_keys["admin"])
    async with issuer_with(registry, make_settings, clock, client_keys, tmp_path) as (h, fetched):
        response = await admin_token(h, kidless(h, "admin", client_keys["admin"]))
        assert response.status_code == 200, response.text
        named = await admin_token(h, kidless(h, "admin", client_keys["admin"]), client_id="admin")
        assert named.status_code == 200, named.text
        assert fetched == ["admin"]  # one fetch, then the cached document
        forged = kidless(h, "admin", client_keys["backend"])
        await refused(h, await admin_token(h, forged), "assertion_bad_signature")


async def test_a_jwks_uri_client_with_two_keys_must_send_a_kid(
    registry: dict[str, Any],
    make_settings: Callable[..., IssuerSettings],
    clock: FakeClock,
    client_keys: dict[str, KeyPair],
    second_admin_key: KeyPair,
    tmp_path: Path,
) -> None:
    by_uri(registry, "admin", client_keys["admin"], second_admin_key)
    async with issuer_with(registry, make_settings, clock, client_keys, tmp_path) as (h, fetched):
        for _ in range(3):
            token = kidless(h, "admin", client_keys["admin"])
            await refused(h, await admin_token(h, token), "assertion_kid_required")
        # Refused kid-less assertions do not make the issuer refetch each time (the refetch interval holds).
        assert fetched == ["admin"]
        with_kid = signed(
            client_keys["admin"], claims_of(h, "admin"), typ="JWT", kid=client_keys["admin"].kid
        )
        assert (await admin_token(h, with_kid, client_id="admin")).status_code == 200
