"""The issuer client against `httpx.MockTransport`: wire format, retries, backoff, typed errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

import keys
from orchestrator import (
    ApprovalDeclined,
    ApprovalExpired,
    AuthorizationLost,
    BankError,
    IssuerClient,
    Movement,
    RetryPolicy,
    ServiceUnavailable,
    ToolRefused,
)
from orchestrator._tokens._errors import (
    ApprovalPending,
    DetailsRefused,
    GrantRevoked,
    InteractionRequired,
    IssuerRefused,
    IssuerUnavailable,
    ScopeNotGranted,
    SlowDown,
)
from orchestrator._tokens._retry import full_jitter

ISSUER = "http://issuer.test"
KEY = keys.generate_key("ES256")
NOW = 1_790_000_000.0
OK = {
    "access_token": "at-1",
    "token_type": "Bearer",
    "expires_in": 300,
    "scope": "read",
    "refresh_token": "rt-2",
}

Outcome = httpx.Response | Exception


class Issuer:
    """Answers scripted outcomes in order and records every form it received."""

    def __init__(self, *outcomes: Outcome) -> None:
        self.outcomes = list(outcomes)
        self.forms: list[dict[str, str]] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.forms.append({k: v[0] for k, v in parse_qs(request.content.decode()).items()})
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def ok(body: dict[str, object] | None = None) -> httpx.Response:
    return httpx.Response(200, json=OK if body is None else body, headers={"Cache-Control": "no-store"})


def error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": code, "error_description": "no"})


@pytest.fixture
def make_client() -> Callable[..., tuple[IssuerClient, Issuer, Sleeps]]:
    def make(*outcomes: Outcome, attempts: int = 3) -> tuple[IssuerClient, Issuer, Sleeps]:
        issuer, sleeps = Issuer(*outcomes), Sleeps()
        http = httpx.AsyncClient(transport=httpx.MockTransport(issuer))
        retry = RetryPolicy(attempts=attempts, timeout=2.5, backoff=lambda attempt: 0.1 * 2**attempt)
        client = IssuerClient(
            http,
            issuer=ISSUER,
            client_id="orchestrator",
            key=KEY,
            retry=retry,
            sleep=sleeps,
            clock=lambda: NOW,
        )
        return client, issuer, sleeps

    return make


async def test_exchange_sends_the_rfc8693_form_with_a_valid_client_assertion(make_client) -> None:
    client, issuer, _ = make_client(ok())
    answer = await client.exchange("the-grant", "read")
    assert (answer.access_token, answer.expires_in, answer.scope, answer.refresh_token) == (
        "at-1",
        300,
        "read",
        "rt-2",
    )
    request, form = issuer.requests[0], issuer.forms[0]
    assert str(request.url) == f"{ISSUER}/token"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"
    assert form["subject_token"] == "the-grant"
    assert form["subject_token_type"] == "urn:ietf:params:oauth:token-type:jwt"
    assert form["scope"] == "read"
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    # Verified by joserfc, an implementation independent of ours.
    token = jwt.decode(form["client_assertion"], ECKey.import_key(KEY.public_jwk()), algorithms=["ES256"])
    assert token.header == {"alg": "ES256", "typ": "JWT", "kid": KEY.kid}
    claims = token.claims
    assert claims["iss"] == claims["sub"] == "orchestrator"
    assert claims["aud"] == f"{ISSUER}/token"
    assert claims["exp"] - claims["iat"] == 60
    assert claims["iat"] == int(NOW)
    assert len(claims["jti"]) >= 22


async def test_refresh_asks_for_the_exact_scope(make_client) -> None:
    client, issuer, _ = make_client(ok({**OK, "scope": "configure"}))
    answer = await client.refresh("rt-1", "configure")
    assert answer.scope == "configure"
    form = issuer.forms[0]
    assert (form["grant_type"], form["refresh_token"], form["scope"]) == (
        "refresh_token",
        "rt-1",
        "configure",
    )
    assert issuer.requests[0].extensions["timeout"] == {
        "connect": 2.5,
        "read": 2.5,
        "write": 2.5,
        "pool": 2.5,
    }


async def test_revoke_posts_the_refresh_token_with_an_assertion(make_client) -> None:
    client, issuer, _ = make_client(httpx.Response(200))
    await client.revoke("rt-9")
    assert str(issuer.requests[0].url) == f"{ISSUER}/revoke"
    form = issuer.forms[0]
    assert (form["token"], form["token_type_hint"]) == ("rt-9", "refresh_token")
    assert "client_assertion" in form


async def test_5xx_then_success_is_retried_with_backoff_and_a_fresh_assertion(make_client) -> None:
    client, issuer, sleeps = make_client(
        error(500, "server_error"), error(503, "temporarily_unavailable"), ok()
    )
    answer = await client.refresh("rt-1", "read")
    assert answer.access_token == "at-1"
    assert len(issuer.requests) == 3
    assert sleeps.delays == [0.2, 0.4]
    jtis = {
        jwt.decode(f["client_assertion"], ECKey.import_key(KEY.public_jwk())).claims["jti"]
        for f in issuer.forms
    }
    assert len(jtis) == 3  # each try carries its own single-use assertion


async def test_connect_errors_are_retried(make_client) -> None:
    client, issuer, sleeps = make_client(httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), ok())
    assert (await client.exchange("g")).access_token == "at-1"
    assert len(issuer.requests) == 3
    assert len(sleeps.delays) == 2


async def test_gives_up_after_n_tries_with_service_unavailable(make_client) -> None:
    client, issuer, sleeps = make_client(*[httpx.ConnectError("refused")] * 4, attempts=4)
    with pytest.raises(IssuerUnavailable) as caught:
        await client.refresh("rt-1", "read")
    assert isinstance(caught.value, ServiceUnavailable)
    assert caught.value.code == "issuer_unavailable"
    assert len(issuer.requests) == 4
    assert len(sleeps.delays) == 3  # no pointless sleep after the last try


async def test_5xx_every_time_gives_up(make_client) -> None:
    client, issuer, _ = make_client(*[error(500, "server_error")] * 3)
    with pytest.raises(ServiceUnavailable):
        await client.refresh("rt-1", "read")
    assert len(issuer.requests) == 3


@pytest.mark.parametrize(
    ("response", "error_type", "code"),
    [
        (error(400, "invalid_grant"), GrantRevoked, "grant_revoked"),
        (error(401, "invalid_client"), IssuerRefused, "issuer_refused"),
        (error(400, "invalid_request"), IssuerRefused, "issuer_refused"),
        (httpx.Response(403, text="nope"), IssuerRefused, "issuer_refused"),
    ],
)
async def test_4xx_is_never_retried_and_ends_the_session(make_client, response, error_type, code) -> None:
    client, issuer, sleeps = make_client(response, ok())
    with pytest.raises(error_type) as caught:
        await client.refresh("rt-1", "read")
    assert isinstance(caught.value, AuthorizationLost)
    assert caught.value.code == code
    assert len(issuer.requests) == 1
    assert sleeps.delays == []


async def test_invalid_scope_is_a_refusal_of_that_tool_only(make_client) -> None:
    client, issuer, _ = make_client(error(400, "invalid_scope"))
    with pytest.raises(ScopeNotGranted) as caught:
        await client.refresh("rt-1", "transact")
    assert isinstance(caught.value, ToolRefused)
    assert "payments" in str(caught.value)
    assert len(issuer.requests) == 1


@pytest.mark.parametrize(
    "in_doubt",
    [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("cut"), error(502, "x"), error(504, "x")],
)
async def test_a_refresh_that_may_have_reached_the_issuer_is_not_resent(make_client, in_doubt) -> None:
    # Resending would present a possibly rotated refresh token: reuse, and the family would be revoked.
    client, issuer, _ = make_client(in_doubt, ok())
    with pytest.raises(IssuerUnavailable):
        await client.refresh("rt-1", "read")
    assert len(issuer.requests) == 1


async def test_revoke_is_idempotent_so_it_is_resent_after_any_failure(make_client) -> None:
    client, issuer, _ = make_client(httpx.ReadTimeout("slow"), error(504, "x"), httpx.Response(200))
    await client.revoke("rt-1")
    assert len(issuer.requests) == 3


@pytest.mark.parametrize(
    "body",
    [
        {},
        {**OK, "token_type": "DPoP"},
        {**OK, "expires_in": "300"},
        {**OK, "expires_in": True},
        {**OK, "expires_in": 0},
        {**OK, "access_token": ""},
        {**OK, "refresh_token": 7},
        {**OK, "scope": ["read"]},
    ],
)
async def test_a_malformed_success_is_unavailable_not_a_crash(make_client, body) -> None:
    client, issuer, _ = make_client(ok(body))
    with pytest.raises(IssuerUnavailable):
        await client.refresh("rt-1", "read")
    assert len(issuer.requests) == 1


async def test_non_json_success_is_unavailable(make_client) -> None:
    client, _, _ = make_client(httpx.Response(200, text="<html>"))
    with pytest.raises(IssuerUnavailable):
        await client.exchange("g")


async def test_no_token_ever_reaches_the_log(make_client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client, _, _ = make_client(
        error(500, "x"),
        ok(),
        error(400, "invalid_grant"),
        httpx.ReadTimeout("slow"),
        error(400, "invalid_scope"),
    )
    await client.exchange("grant-secret")
    for call in (client.refresh("rt-secret", "read"), client.refresh("rt-secret", "read")):
        with pytest.raises(BankError):
            await call
    with pytest.raises(ToolRefused):
        await client.refresh("rt-secret", "transact")
    text = caplog.text + json.dumps([r.args for r in caplog.records], default=str)
    assert caplog.records
    for secret in ("grant-secret", "rt-secret", "at-1", "rt-2", "eyJ"):
        assert secret not in text


def test_token_response_repr_hides_the_tokens() -> None:
    from orchestrator import TokenResponse

    text = repr(TokenResponse("at-secret", 300.0, "read", "rt-secret"))
    assert "secret" not in text
    assert "read" in text


def test_full_jitter_stays_within_its_exponential_cap() -> None:
    delay = full_jitter(base=0.5, cap=3.0)
    for attempt, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (10, 3.0)]:
        samples = [delay(attempt) for _ in range(200)]
        assert all(0.0 <= s <= cap for s in samples)
        assert max(samples) > cap / 2  # jitter spreads over the whole range


# -- payments: authorization details, out-of-band approval (CIBA) ----------------------------------------

DETAILS = Movement("payment", "a", "p", "1.00", "USD", "k").authorization_details()
APPROVAL = {"auth_req_id": "req-1", "expires_in": 120, "interval": 2}


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        ("interaction_required", InteractionRequired),
        ("invalid_authorization_details", DetailsRefused),
    ],
)
async def test_a_refused_movement_never_ends_the_session(make_client, code, error_type) -> None:
    client, issuer, _ = make_client(error(400, code))
    with pytest.raises(error_type) as caught:
        await client.refresh("rt-1", "transact", DETAILS)
    assert not isinstance(caught.value, AuthorizationLost)
    assert issuer.forms[0]["authorization_details"] == DETAILS
    assert issuer.forms[0]["scope"] == "transact"


async def test_backchannel_authorize_sends_the_session_the_movement_and_the_message(make_client) -> None:
    client, issuer, _ = make_client(ok(APPROVAL))
    request = await client.backchannel_authorize("vb-room", DETAILS, "Pay 1.00 USD to P")
    assert (request.auth_req_id, request.expires_in, request.interval) == ("req-1", 120, 2)
    assert "req-1" not in repr(request)
    (form,) = issuer.forms
    assert issuer.requests[0].url.path == "/bc-authorize"
    assert (form["login_hint"], form["scope"], form["binding_message"]) == (
        "vb-room",
        "transact",
        "Pay 1.00 USD to P",
    )
    assert form["authorization_details"] == DETAILS
    assert form["client_assertion"]


@pytest.mark.parametrize(
    ("answer", "error_type"),
    [
        (error(400, "invalid_binding_message"), DetailsRefused),
        (error(400, "invalid_authorization_details"), DetailsRefused),
        (error(400, "access_denied"), ToolRefused),
        (error(400, "unknown_user_id"), IssuerRefused),
        (ok({**APPROVAL, "interval": 0}), IssuerUnavailable),
        (ok({**APPROVAL, "expires_in": "120"}), IssuerUnavailable),
        (ok({**APPROVAL, "auth_req_id": ""}), IssuerUnavailable),
    ],
)
async def test_backchannel_authorize_refusals(make_client, answer, error_type) -> None:
    client, _, _ = make_client(answer)
    with pytest.raises(error_type):
        await client.backchannel_authorize("vb-room", DETAILS, "Pay")


@pytest.mark.parametrize(
    ("answer", "error_type"),
    [
        (error(400, "authorization_pending"), ApprovalPending),
        (error(400, "slow_down"), SlowDown),
        (error(400, "access_denied"), ApprovalDeclined),
        (error(400, "expired_token"), ApprovalExpired),
        (error(400, "invalid_grant"), ApprovalExpired),  # unknown, spent or its call ended: no token coming
        (error(401, "invalid_client"), IssuerRefused),
    ],
)
async def test_each_poll_answer_is_typed(make_client, answer, error_type) -> None:
    client, issuer, _ = make_client(answer)
    with pytest.raises(error_type):
        await client.poll("req-1")
    assert issuer.forms[0]["grant_type"] == "urn:openid:params:grant-type:ciba"
    assert issuer.forms[0]["auth_req_id"] == "req-1"


async def test_an_approved_poll_is_the_transact_token(make_client) -> None:
    client, _, _ = make_client(
        ok({"access_token": "at-t", "token_type": "Bearer", "expires_in": 60, "scope": "transact"})
    )
    answer = await client.poll("req-1")
    assert (answer.access_token, answer.expires_in, answer.refresh_token) == ("at-t", 60, None)
