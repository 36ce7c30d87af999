"""Every error a client can cause: RFC 6749 §5.2 / RFC 7009 / RFC 8693 / RFC 6750 answers, never a 500."""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx
import pytest

from keys import JWT_BEARER, KeyPair, client_assertion, generate_key, sign
from keys._jose._b64 import b64url_encode
from keys._jose._sign import signature_bytes
from tests.support.issuer import ISSUER, RESOURCE, TOKEN_ENDPOINT, Harness


def assert_oauth_error(response: httpx.Response, error: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert isinstance(body["error_description"], str)
    assert response.headers["cache-control"] == "no-store"


def assertion_claims(h: Harness, client_id: str = "admin", **overrides: Any) -> dict[str, Any]:
    now = int(h.clock())
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_ENDPOINT,
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(8),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


async def cc_with(h: Harness, assertion: str, **extra: str) -> httpx.Response:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion,
        **extra,
    }
    return await h.http.post("/token", data=form)


async def test_missing_grant_type(issuer: Harness) -> None:
    assert_oauth_error(await issuer.http.post("/token", data=issuer.auth("admin")), "invalid_request")


async def test_unsupported_grant_type(issuer: Harness) -> None:
    response = await issuer.token("admin", grant_type="password", username="a", password="b")
    assert_oauth_error(response, "unsupported_grant_type")


async def test_unauthorized_client_for_its_grant(issuer: Harness) -> None:
    assert_oauth_error(await issuer.refresh("x", client_id="backend"), "unauthorized_client")
    assert_oauth_error(
        await issuer.token("orchestrator", grant_type="client_credentials"), "unauthorized_client"
    )


async def test_invalid_client_answers_401_with_a_challenge(issuer: Harness) -> None:
    response = await issuer.http.post("/token", data={"grant_type": "client_credentials"})
    assert_oauth_error(response, "invalid_client", 401)
    assert "www-authenticate" in response.headers


@pytest.mark.parametrize(
    "change",
    [
        {"aud": "http://elsewhere/token"},
        {"aud": RESOURCE},
        {"exp": None},
        {"jti": None},
        {"iat": None},
        {"sub": "backend"},
        {"iss": "backend"},
        {"exp": "soon"},
    ],
    ids=["wrong-aud", "resource-aud", "no-exp", "no-jti", "no-iat", "wrong-sub", "wrong-iss", "bad-exp"],
)
async def test_bad_assertion_claims_are_invalid_client(issuer: Harness, change: dict[str, Any]) -> None:
    token = sign(assertion_claims(issuer, **change), issuer.keys["admin"], typ="JWT")
    assert_oauth_error(await cc_with(issuer, token), "invalid_client", 401)


async def test_assertion_lifetime_is_capped_at_300_seconds(issuer: Harness) -> None:
    now = int(issuer.clock())
    ok = sign(assertion_claims(issuer, exp=now + 300), issuer.keys["admin"], typ="JWT")
    assert (await cc_with(issuer, ok)).status_code == 200
    too_long = sign(assertion_claims(issuer, exp=now + 301), issuer.keys["admin"], typ="JWT")
    assert_oauth_error(await cc_with(issuer, too_long), "invalid_client", 401)


async def test_assertion_expires(issuer: Harness) -> None:
    token = client_assertion("admin", issuer.keys["admin"], TOKEN_ENDPOINT, issuer.clock())
    issuer.clock.advance(60 + 61)  # lifetime + leeway
    assert_oauth_error(await cc_with(issuer, token), "invalid_client", 401)


async def test_assertion_is_single_use(issuer: Harness) -> None:
    token = client_assertion("admin", issuer.keys["admin"], TOKEN_ENDPOINT, issuer.clock())
    assert (await cc_with(issuer, token)).status_code == 200
    assert_oauth_error(await cc_with(issuer, token), "invalid_client", 401)
    # Still refused much later, while the assertion could otherwise verify within leeway.
    issuer.clock.advance(100)
    assert_oauth_error(await cc_with(issuer, token), "invalid_client", 401)


async def test_assertion_signed_by_another_clients_key(issuer: Harness) -> None:
    # Signed with backend's registered key but claiming to be admin.
    token = sign(assertion_claims(issuer, "admin"), issuer.keys["backend"], typ="JWT")
    assert_oauth_error(await cc_with(issuer, token, client_id="admin"), "invalid_client", 401)
    assert_oauth_error(await cc_with(issuer, token), "invalid_client", 401)


async def test_assertion_with_an_unregistered_key(issuer: Harness) -> None:
    token = sign(assertion_claims(issuer), generate_key("ES256"), typ="JWT")
    assert_oauth_error(await cc_with(issuer, token), "invalid_client", 401)


async def test_assertion_with_wrong_typ_or_garbage(issuer: Harness) -> None:
    wrong_typ = sign(assertion_claims(issuer), issuer.keys["admin"], typ="at+jwt")
    for token in (wrong_typ, "garbage", "a.b.c", "e30.e30.", "x" * 10_000):
        assert_oauth_error(await cc_with(issuer, token), "invalid_client", 401)


async def test_other_client_auth_methods_are_refused(issuer: Harness) -> None:
    response = await issuer.http.post(
        "/token", data={"grant_type": "client_credentials", "client_id": "admin", "client_secret": "x"}
    )
    assert_oauth_error(response, "invalid_client", 401)
    basic = await issuer.http.post(
        "/token",
        data={"grant_type": "client_credentials", **issuer.auth("admin")},
        headers={"Authorization": "Basic YWRtaW46eA=="},
    )
    assert_oauth_error(basic, "invalid_client", 401)
    wrong_type = {**issuer.auth("admin"), "client_assertion_type": "urn:other"}
    assert_oauth_error(
        await issuer.http.post("/token", data={"grant_type": "client_credentials", **wrong_type}),
        "invalid_client",
        401,
    )


async def test_client_id_parameter_must_match(issuer: Harness) -> None:
    token = client_assertion("admin", issuer.keys["admin"], TOKEN_ENDPOINT, issuer.clock())
    assert_oauth_error(await cc_with(issuer, token, client_id="backend"), "invalid_client", 401)


async def test_client_credentials_scope_errors(issuer: Harness) -> None:
    assert_oauth_error(
        await issuer.token("admin", grant_type="client_credentials", scope="read"), "invalid_scope"
    )
    response = await issuer.token("admin", grant_type="client_credentials", scope="sessions:create")
    assert_oauth_error(response, "invalid_scope")
    assert_oauth_error(
        await issuer.token("admin", grant_type="client_credentials", scope="a\\b"), "invalid_scope"
    )


async def test_exchange_errors(issuer: Harness) -> None:
    session = await issuer.session("alice", "read")
    grant = session["session_grant"]
    assert_oauth_error(await issuer.exchange(grant, scope="transact"), "invalid_scope")
    assert_oauth_error(await issuer.exchange(grant, resource="http://evil/mcp"), "invalid_target")
    assert_oauth_error(await issuer.exchange(grant, audience="http://evil/mcp"), "invalid_target")
    assert_oauth_error(await issuer.exchange("not.a.grant"), "invalid_grant")
    assert_oauth_error(await issuer.exchange(grant, requested_token_type="urn:x"), "invalid_request")
    assert_oauth_error(await issuer.exchange(grant, actor_token="x"), "invalid_request")
    missing_type = await issuer.token(
        "orchestrator", grant_type="urn:ietf:params:oauth:grant-type:token-exchange", subject_token=grant
    )
    assert_oauth_error(missing_type, "invalid_request")
    # None of the refusals above burned the grant; an exchange works once, then never again.
    assert (await issuer.exchange(grant)).status_code == 200
    assert_oauth_error(await issuer.exchange(grant), "invalid_grant")


async def test_exchange_refuses_an_access_token_or_an_expired_grant(issuer: Harness) -> None:
    body = await issuer.login()
    assert_oauth_error(await issuer.exchange(body["access_token"]), "invalid_grant")
    grant = (await issuer.session())["session_grant"]
    issuer.clock.advance(600 + 61)
    assert_oauth_error(await issuer.exchange(grant), "invalid_grant")


async def test_exchange_refuses_a_grant_signed_by_someone_else(issuer: Harness) -> None:
    now = int(issuer.clock())
    claims = {
        "iss": ISSUER, "sub": "alice", "aud": ISSUER, "iat": now, "exp": now + 600, "jti": "j", "sid": "s",
        "scope": "read", "may_act": {"sub": "orchestrator"},
    }  # fmt: skip
    forged = sign(claims, issuer.keys["orchestrator"], typ="session-grant+jwt")
    assert_oauth_error(await issuer.exchange(forged), "invalid_grant")


async def test_refresh_errors(issuer: Harness) -> None:
    assert_oauth_error(await issuer.token("orchestrator", grant_type="refresh_token"), "invalid_request")
    assert_oauth_error(await issuer.refresh("unknown"), "invalid_grant")
    body = await issuer.login()
    assert_oauth_error(await issuer.refresh(body["refresh_token"], resource="http://evil"), "invalid_target")


async def test_duplicate_parameters_are_invalid_request(issuer: Harness) -> None:
    auth = issuer.auth("admin")
    content = (
        httpx.QueryParams({**auth, "grant_type": "client_credentials"})
        .add("scope", "keys:admin")
        .add("scope", "keys:admin")
    )
    response = await issuer.http.post(
        "/token", content=str(content), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert_oauth_error(response, "invalid_request")


async def test_wrong_content_type_is_invalid_request(issuer: Harness) -> None:
    response = await issuer.http.post("/token", json={"grant_type": "client_credentials"})
    assert_oauth_error(response, "invalid_request")
    revoke = await issuer.http.post("/revoke", content=b"token=x", headers={"Content-Type": "text/plain"})
    assert_oauth_error(revoke, "invalid_request")


async def test_oversized_body_is_413(issuer: Harness) -> None:
    response = await issuer.http.post("/token", data={"grant_type": "x", "pad": "a" * 20_000})
    assert_oauth_error(response, "invalid_request", 413)

    async def stream() -> Any:
        for _ in range(40):
            yield b"a" * 1024

    chunked = await issuer.http.post(
        "/token", content=stream(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert_oauth_error(chunked, "invalid_request", 413)


async def test_malformed_form_encoding(issuer: Harness) -> None:
    for body in (b"grant_type=%ff%fe", b"\xff\xfe=1", b"a=1\x00"):
        response = await issuer.http.post(
            "/token", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert response.status_code in (400, 401), response.text


async def test_revoke_errors(issuer: Harness) -> None:
    assert_oauth_error(await issuer.http.post("/revoke", data={"token": "x"}), "invalid_client", 401)
    assert_oauth_error(await issuer.http.post("/revoke", data=issuer.auth("orchestrator")), "invalid_request")
    body = await issuer.login()
    access = await issuer.http.post(
        "/revoke", data={"token": body["access_token"], **issuer.auth("orchestrator")}
    )
    assert_oauth_error(access, "unsupported_token_type")
    foreign = await issuer.http.post("/revoke", data={"token": body["refresh_token"], **issuer.auth("other")})
    assert_oauth_error(foreign, "invalid_grant")
    # The family survived the foreign attempt.
    assert (await issuer.refresh(body["refresh_token"])).status_code == 200


async def test_bearer_errors_on_issuer_endpoints(issuer: Harness) -> None:
    none = await issuer.http.post("/sessions", json={"user_id": "alice"})
    assert_oauth_error(none, "invalid_token", 401)
    assert none.headers["www-authenticate"] == 'Bearer realm="voicebank-issuer"'
    bad = await issuer.http.get("/admin/keys", headers={"Authorization": "Bearer nope"})
    assert_oauth_error(bad, "invalid_token", 401)
    assert 'error="invalid_token"' in bad.headers["www-authenticate"]
    backend = await issuer.bearer("backend", "sessions:create")
    forbidden = await issuer.http.get("/admin/keys", headers={"Authorization": f"Bearer {backend}"})
    assert_oauth_error(forbidden, "insufficient_scope", 403)
    assert 'scope="keys:admin"' in forbidden.headers["www-authenticate"]
    # An MCP access token (aud = resource) is no issuer bearer.
    access = (await issuer.login())["access_token"]
    wrong_aud = await issuer.http.get("/admin/keys", headers={"Authorization": f"Bearer {access}"})
    assert_oauth_error(wrong_aud, "invalid_token", 401)


async def test_session_body_errors(issuer: Harness) -> None:
    headers = {"Authorization": f"Bearer {await issuer.bearer('backend', 'sessions:create')}"}
    cases: list[tuple[Any, str]] = [
        ({"user_id": "alice", "scope": "keys:admin"}, "invalid_scope"),
        ({"user_id": "alice", "scope": 3}, "invalid_request"),
        ({"scope": "read"}, "invalid_request"),
        ({"user_id": "a b"}, "invalid_request"),
        ({"user_id": "alice", "room": "../x"}, "invalid_request"),
        ({"user_id": "alice", "extra": 1}, "invalid_request"),
        ([1, 2], "invalid_request"),
    ]
    for body, error in cases:
        assert_oauth_error(await issuer.http.post("/sessions", json=body, headers=headers), error)
    not_json = await issuer.http.post(
        "/sessions", content=b"{", headers={**headers, "Content-Type": "application/json"}
    )
    assert_oauth_error(not_json, "invalid_request")


async def test_admin_rotate_body_errors(issuer: Harness) -> None:
    headers = {"Authorization": f"Bearer {await issuer.bearer('admin', 'keys:admin')}"}
    # {"alg": "RS256"} on an ES256 ring is no error any more: it prepares a migration (test_issuer_migration).
    for body in ({"alg": "HS256"}, {"force": "yes"}, {"what": 1}, {"alg": None, "force": 1}):
        assert_oauth_error(
            await issuer.http.post("/admin/keys/rotate", json=body, headers=headers), "invalid_request"
        )


async def test_unknown_routes_and_methods_are_json(issuer: Harness) -> None:
    assert_oauth_error(await issuer.http.get("/nope"), "not_found", 404)
    assert_oauth_error(await issuer.http.get("/token"), "invalid_request", 405)


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
GARBAGE: list[dict[str, Any]] = [
    {"content": b""},
    {"content": b"\x00\xff" * 50, "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
    {"content": b"%%%&&&===", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
    {"content": b"[" * 5000, "headers": {"Content-Type": "application/json"}},
    {"content": b'{"a":' * 3000, "headers": {"Content-Type": "application/json"}},
    {"content": b"null", "headers": {"Content-Type": "application/json"}},
    {"content": b"client_assertion=..&client_assertion_type=" + JWT_BEARER.encode(),
     "headers": FORM},
    {"content": b"x", "headers": {"Content-Type": "multipart/form-data; boundary=zz"}},
    {"content": b"a=1", "headers": {**FORM, "Content-Length": "a"}},
    {"headers": {"Authorization": "Bearer " + "e" * 9000}},
    {"headers": {"Authorization": "Bearer a.b.c", "If-None-Match": "\x7f"}},
]  # fmt: skip
ENDPOINTS = [
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("POST", "/token"),
    ("POST", "/revoke"),
    ("POST", "/sessions"),
    ("GET", "/admin/keys"),
    ("POST", "/admin/keys/rotate"),
    ("POST", "/admin/keys/%00%ff/revoke"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
]


async def test_garbage_at_every_endpoint_is_never_a_500(issuer: Harness) -> None:
    for method, path in ENDPOINTS:
        for request in GARBAGE:
            try:
                response = await issuer.http.request(method, path, **request)
            except httpx.LocalProtocolError:
                continue  # httpx itself refuses to send this one
            assert response.status_code < 500, (method, path, request, response.text)
            if response.status_code >= 400:
                assert set(response.json()) == {"error", "error_description"}


def _sign_without_typ(claims: dict[str, Any], key: KeyPair) -> str:
    header = b64url_encode(json.dumps({"alg": key.alg, "kid": key.kid}).encode())
    payload = b64url_encode(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}"
    return f"{signing_input}.{b64url_encode(signature_bytes(key, signing_input.encode()))}"


async def test_assertion_without_typ_is_accepted_per_rfc7523(issuer: Harness) -> None:
    # RFC 7523 does not require `typ`; common client libraries omit it.
    token = _sign_without_typ(assertion_claims(issuer), issuer.keys["admin"])
    assert (await cc_with(issuer, token, scope="keys:admin")).status_code == 200
