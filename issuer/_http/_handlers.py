"""The one place errors become HTTP answers: RFC 6749 §5.2 / RFC 6750 JSON bodies, statuses and headers."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from issuer._audit import Decision
from issuer._oauth._bearer import NO_TOKEN
from issuer._oauth._errors import (
    InsufficientScope,
    InvalidClient,
    InvalidRequest,
    InvalidToken,
    NotFound,
    OAuthError,
    TemporarilyUnavailable,
    UseDPoPNonce,
)
from issuer._state import IssuerState
from keys import KeyStoreError, NoSigningKey, ReplayUnavailable

REALM = "voicebank-issuer"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
log = logging.getLogger("issuer.errors")


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _challenge(exc: OAuthError) -> str | None:
    if isinstance(exc, InvalidClient):
        # No standard scheme names private_key_jwt; the challenge names the one method accepted.
        return f'private_key_jwt realm="{REALM}"'
    if isinstance(exc, InvalidToken):
        if exc.reason == NO_TOKEN:
            return f'Bearer realm="{REALM}"'  # RFC 6750 §3.1: no error code when no token was sent
        return f'Bearer realm="{REALM}", error="invalid_token", error_description={_quoted(exc.description)}'
    if isinstance(exc, InsufficientScope):
        return f'Bearer realm="{REALM}", error="insufficient_scope", scope={_quoted(exc.scope)}'
    return None


def oauth_error_response(exc: OAuthError) -> JSONResponse:
    headers = dict(NO_STORE)
    challenge = _challenge(exc)
    if challenge is not None:
        headers["WWW-Authenticate"] = challenge
    if isinstance(exc, UseDPoPNonce):
        headers["DPoP-Nonce"] = exc.nonce  # RFC 9449 §8
    return JSONResponse(
        {"error": exc.code, "error_description": exc.description}, exc.status, headers=headers
    )


def _state(request: Request) -> IssuerState | None:
    state: IssuerState | None = getattr(request.app.state, "issuer", None)
    return state


def _as_oauth(exc: Exception) -> OAuthError:
    if isinstance(exc, OAuthError):
        return exc
    if isinstance(exc, HTTPException):
        if exc.status_code == 404:
            return NotFound("no such endpoint", reason="no_route")
        return InvalidRequest(
            "this method is not allowed here", reason=f"http_{exc.status_code}", status=exc.status_code
        )
    if isinstance(exc, NoSigningKey):
        # The ring no longer signs with ISSUER_SIGNING_ALG (retired elsewhere): an operator must act.
        return TemporarilyUnavailable("the issuer cannot sign right now; retry later", reason=exc.code)
    if isinstance(exc, RedisError | KeyStoreError | ReplayUnavailable):
        return TemporarilyUnavailable(
            "the issuer's store is unavailable; retry later", reason=type(exc).__name__
        )
    raise exc


async def _handle(request: Request, exc: Exception) -> Response:
    error = _as_oauth(exc)
    state = _state(request)
    if state is not None:
        state.metrics.errors.labels(code=error.code, reason=error.reason).inc()
        decision: Decision | None = getattr(request.state, "audit", None)
        if decision is not None:
            outcome = "error" if error.status >= 500 else "refused"
            state.audit.decided(decision, outcome=outcome, reason=error.reason)
    log.info("%s %s refused: %s (%s)", request.method, request.url.path, error.code, error.reason)
    response = oauth_error_response(error)
    if isinstance(exc, HTTPException) and exc.headers:
        response.headers.update(exc.headers)  # e.g. Allow on 405
    return response


def install_error_handlers(app: FastAPI) -> None:
    for kind in (OAuthError, HTTPException, RedisError, KeyStoreError, ReplayUnavailable, NoSigningKey):
        app.add_exception_handler(kind, _handle)
