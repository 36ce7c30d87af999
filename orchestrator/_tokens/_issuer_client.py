"""The orchestrator's OAuth client of the issuer: token exchange, refresh, revocation, CIBA approval.

Retries: every try carries a fresh client assertion (its `jti` is single-use). Revocation is idempotent
and is retried on any 5xx or network error. Token exchange and refresh are not: the session grant is
exchanged once and a refresh rotates the refresh token, so re-sending a request the issuer may already
have processed would present a spent token, which the issuer treats as reuse and answers by revoking the
whole family. Those two are therefore retried only when the request provably did not reach the issuer
(connect errors, pool timeouts) or when the issuer itself answered 5xx (its transaction failed, nothing
rotated); a read timeout, a broken connection mid-request or a proxy's 502/504 raise `IssuerUnavailable`
at once. The token manager then keeps the old refresh token: if the issuer did rotate, the next refresh
is a reuse and the session ends with `GrantRevoked` - a rare, loud, safe failure rather than a silent one.
`/bc-authorize` and CIBA polls follow the same rule: a repeated one could show the user a second request
or lose the one approved token.

DPoP: with the call's key, every `/token` and `/bc-authorize` request carries a fresh proof, and the tokens
come back bound to that key (`token_type` DPoP). A `use_dpop_nonce` answer is retried once, at once, with the
issuer's nonce: the issuer refused before acting, so nothing was spent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from opentelemetry import trace

import keys
from keys import JWT_BEARER, client_assertion
from orchestrator._bank._protocol import ApprovalDeclined, ApprovalExpired, ToolRefused
from orchestrator._tokens._dpop import CallKey, nonce_challenge
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
from orchestrator._tokens._retry import IN_DOUBT_STATUSES, NOT_SENT_ERRORS, RetryPolicy, Sleep
from orchestrator._tracing import trace_headers, tracer

__all__ = ["BackchannelRequest", "IssuerClient", "TokenResponse"]

log = logging.getLogger(__name__)

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a grant type
CIBA = "urn:openid:params:grant-type:ciba"
TOO_MANY_APPROVALS = "Too many approvals are already waiting in your banking app, so no money moved."
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - a token type URN


@dataclass(frozen=True)
class TokenResponse:
    """A successful `/token` answer; the tokens stay out of `repr`."""

    access_token: str = field(repr=False)
    expires_in: float
    scope: str
    refresh_token: str | None = field(default=None, repr=False)
    token_type: str = "Bearer"  # noqa: S105 - "DPoP" when bound to the call's key


@dataclass(frozen=True)
class BackchannelRequest:
    """A CIBA approval request the user's app now shows; poll for its outcome every `interval` seconds."""

    auth_req_id: str = field(repr=False)
    expires_in: float
    interval: float


def _seconds(value: object) -> float | None:
    """A positive number of seconds below a day, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 86400:
        return None
    return float(value)


def _wall_clock() -> float:
    # Looked up at call time so that freezegun's patched `time.time` is seen.
    return time.time()


class IssuerClient:
    """Calls the issuer's `/token` and `/revoke` as the `private_key_jwt` client `client_id`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        issuer: str,
        client_id: str,
        key: keys.KeyPair,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = _wall_clock,
        dpop: CallKey | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._http = http
        self._tracer = tracer(tracer_provider)
        self._issuer = issuer.rstrip("/")
        self._token_endpoint = f"{self._issuer}/token"
        self._proved = (self._token_endpoint, f"{self._issuer}/bc-authorize")  # what carries a DPoP proof
        self._client_id = client_id
        self._key = key
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._dpop = dpop

    async def exchange(self, session_grant: str, scope: str = "read") -> TokenResponse:
        """RFC 8693: trade the session grant for an access token of `scope` and a refresh token."""
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": session_grant,
            "subject_token_type": JWT_TOKEN_TYPE,
            "scope": scope,
        }
        response = await self._post("/token", form, idempotent=False)
        return self._token_response(response, scope)

    async def refresh(
        self, refresh_token: str, scope: str, authorization_details: str | None = None
    ) -> TokenResponse:
        """The refresh-token grant for exactly `scope`; the answer carries the rotated refresh token.

        A `transact` token is asked for with the `authorization_details` (RFC 9396) of its one movement;
        above the session's approval threshold the issuer answers `InteractionRequired` and keeps the
        refresh token unspent.
        """
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "scope": scope}
        if authorization_details is not None:
            form["authorization_details"] = authorization_details
        response = await self._post("/token", form, idempotent=False)
        return self._token_response(response, scope)

    async def backchannel_authorize(
        self, session_id: str, authorization_details: str, binding_message: str
    ) -> BackchannelRequest:
        """OpenID CIBA: ask the user (found by the session) to approve one movement on their own device."""
        form = {
            "scope": "transact",
            "login_hint": session_id,
            "authorization_details": authorization_details,
            "binding_message": binding_message,
        }
        response = await self._post("/bc-authorize", form, idempotent=False)
        if response.status_code != 200:
            error = _json_object(response).get("error")
            # About this one movement, not the session: the call goes on.
            if error in ("invalid_authorization_details", "invalid_binding_message"):
                log.warning("issuer refused the approval request: %s", error)
                raise DetailsRefused()
            if error == "access_denied":
                log.warning("issuer refused the approval request: access_denied")
                raise ToolRefused(TOO_MANY_APPROVALS)
            raise _refusal(response, "transact")
        body = _json_object(response)
        auth_req_id = body.get("auth_req_id")
        expires_in, interval = _seconds(body.get("expires_in")), _seconds(body.get("interval"))
        if not (isinstance(auth_req_id, str) and auth_req_id) or expires_in is None or interval is None:
            log.error("issuer /bc-authorize answered 200 with a malformed body")
            raise IssuerUnavailable
        return BackchannelRequest(auth_req_id, expires_in, interval)

    async def poll(self, auth_req_id: str) -> TokenResponse:
        """One CIBA poll: the approved `transact` token, or `ApprovalPending`, `SlowDown`,
        `ApprovalDeclined`, `ApprovalExpired`."""
        form = {"grant_type": CIBA, "auth_req_id": auth_req_id}
        response = await self._post("/token", form, idempotent=False)
        if response.status_code == 200:
            return self._token_response(response, "transact")
        error = _json_object(response).get("error")
        # Undecided is the normal answer while the user looks at their phone: not worth a warning.
        if error == "authorization_pending":
            raise ApprovalPending()
        if error == "slow_down":
            log.info("issuer asked to poll more slowly")
            raise SlowDown()
        if error == "invalid_grant":
            # The request is unknown, spent or its call ended: no token will come from it.
            log.warning("issuer refused the approval poll: invalid_grant")
            raise ApprovalExpired()
        raise _refusal(response, "transact")

    async def revoke(self, refresh_token: str) -> None:
        """RFC 7009: revoke the refresh token, and with it its whole family."""
        form = {"token": refresh_token, "token_type_hint": "refresh_token"}
        response = await self._post("/revoke", form, idempotent=True)
        if response.status_code != 200:
            raise _refusal(response, scope="")

    async def _send(self, url: str, form: Mapping[str, str]) -> httpx.Response:
        """One request: a fresh assertion, a fresh proof on `/token`, one retry on a nonce challenge."""
        proves = self._dpop is not None and url in self._proved
        for _ in range(2):
            data = {
                **form,
                "client_assertion_type": JWT_BEARER,
                "client_assertion": client_assertion(
                    self._client_id, self._key, self._token_endpoint, self._clock()
                ),
            }
            headers = {"DPoP": self._dpop.proof("POST", url)} if self._dpop is not None and proves else {}
            headers |= trace_headers()
            response = await self._http.post(url, data=data, headers=headers, timeout=self._retry.timeout)
            if self._dpop is None or not self._dpop.learn_nonce(url, response.headers):
                return response
            if not nonce_challenge(response.status_code, response.headers, _error_code(response)):
                return response
        return response

    async def _post(self, path: str, form: Mapping[str, str], *, idempotent: bool) -> httpx.Response:
        # One client span per issuer call (its tries included); the issuer's spans and audit lines join it.
        with self._tracer.start_as_current_span(f"issuer POST {path}", kind=trace.SpanKind.CLIENT) as span:
            response = await self._post_traced(path, form, idempotent=idempotent)
            span.set_attribute("http.response.status_code", response.status_code)
            return response

    async def _post_traced(self, path: str, form: Mapping[str, str], *, idempotent: bool) -> httpx.Response:
        url = f"{self._issuer}{path}"
        attempts = max(1, self._retry.attempts)
        for attempt in range(1, attempts + 1):
            try:
                response = await self._send(url, form)
            except NOT_SENT_ERRORS as exc:
                retriable, reason = True, type(exc).__name__
            except httpx.TransportError as exc:
                retriable, reason = idempotent, type(exc).__name__
            else:
                if response.status_code < 500:
                    return response
                retriable = idempotent or response.status_code not in IN_DOUBT_STATUSES
                reason = f"HTTP {response.status_code}"
            log.warning("issuer %s failed (try %d of %d): %s", path, attempt, attempts, reason)
            if not retriable or attempt == attempts:
                break
            await self._sleep(self._retry.backoff(attempt))
        raise IssuerUnavailable

    def _token_response(self, response: httpx.Response, scope: str) -> TokenResponse:
        if response.status_code != 200:
            raise _refusal(response, scope)
        parsed = _parse_success(_json_object(response), scope, dpop=self._dpop is not None)
        if parsed is None:
            log.error("issuer /token answered 200 with a malformed body")
            raise IssuerUnavailable
        return parsed


def _parse_success(body: Mapping[str, Any], scope: str, *, dpop: bool) -> TokenResponse | None:
    access_token = body.get("access_token")
    expires_in = body.get("expires_in")
    token_type = body.get("token_type")
    refresh_token = body.get("refresh_token")
    granted = body.get("scope", scope)
    if not (isinstance(access_token, str) and access_token and isinstance(granted, str)):
        return None
    # A bound token only when we proved a key; the issuer may answer Bearer to a proof (RFC 9449 §5).
    kinds = ("bearer", "dpop") if dpop else ("bearer",)
    if not (isinstance(token_type, str) and token_type.lower() in kinds):
        return None
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or not 0 < expires_in < 86400:
        return None
    if refresh_token is not None and not (isinstance(refresh_token, str) and refresh_token):
        return None
    scheme = "DPoP" if token_type.lower() == "dpop" else "Bearer"
    return TokenResponse(access_token, float(expires_in), granted, refresh_token, scheme)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_code(response: httpx.Response) -> str | None:
    if response.status_code != 400:
        return None
    error = _json_object(response).get("error")
    return error if isinstance(error, str) else None


def _refusal(response: httpx.Response, scope: str) -> Exception:
    """Map an RFC 6749 §5.2 error answer to a typed error."""
    error = _json_object(response).get("error")
    error = error if isinstance(error, str) else f"http_{response.status_code}"
    # Above the approval threshold is an ordinary answer, not trouble.
    level = logging.INFO if error == "interaction_required" else logging.WARNING
    log.log(level, "issuer refused: %s (HTTP %d)", error, response.status_code)
    if error == "invalid_grant":
        return GrantRevoked()
    if error == "invalid_scope":
        return ScopeNotGranted(scope)
    # Answers about one movement, never about the session: none of them ends the call's authorization.
    if error == "interaction_required":
        return InteractionRequired()
    if error == "invalid_authorization_details":
        return DetailsRefused()
    if error == "access_denied":
        return ApprovalDeclined()
    if error == "expired_token":
        return ApprovalExpired()
    return IssuerRefused(error)
