"""`POST /token`: client credentials, token exchange (RFC 8693), rotating refresh tokens, the CIBA grant."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from issuer._audit import Decision
from issuer._endpoints._ciba import ciba_token
from issuer._endpoints._transact import TRANSACT, requested_detail, reserve
from issuer._http._body import optional_param, required_param
from issuer._oauth._authorization_details import AuthorizationDetail
from issuer._oauth._clients import (
    GRANT_CIBA,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_REFRESH,
    GRANT_TOKEN_EXCHANGE,
    Client,
)
from issuer._oauth._dpop import require_key
from issuer._oauth._errors import (
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from issuer._oauth._refresh import RefreshFamily
from issuer._oauth._scope import ISSUER_SCOPES, RESOURCE_SCOPES, format_scope, parse_scope
from issuer._signing._mint import Minted
from issuer._state import IssuerState
from keys import CLOCK_LEEWAY, DPoPProof, TokenError

TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105
TOKEN_TYPE_ACCESS = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105
DEFAULT_EXCHANGE_SCOPE = frozenset({"read"})
_EVENTS = {
    GRANT_CLIENT_CREDENTIALS: "token.client_credentials",
    GRANT_TOKEN_EXCHANGE: "token.exchange",
    GRANT_REFRESH: "token.refresh",
    GRANT_CIBA: "token.ciba",
}


def _requested_scope(form: dict[str, str], default: frozenset[str]) -> frozenset[str]:
    value = optional_param(form, "scope")
    return default if value is None else parse_scope(value)


def _resource(state: IssuerState, form: dict[str, str]) -> str:
    """The one resource a resource token may name (RFC 8707 `resource`, RFC 8693 `audience`)."""
    resource = state.settings.mcp_resource_url
    for name in ("resource", "audience"):
        value = optional_param(form, name)
        if value is not None and value != resource:
            raise InvalidTarget(f"unknown {name}; this issuer serves only {resource}")
    return resource


def _jkt(proof: DPoPProof | None) -> str | None:
    return None if proof is None else proof.jkt


def _answer(minted: Minted, scope: str, jkt: str | None, **extra: str) -> dict[str, Any]:
    return {
        "access_token": minted.token,
        "token_type": "Bearer" if jkt is None else "DPoP",
        "expires_in": minted.expires_in,
        "scope": scope,
        **extra,
    }


async def _client_credentials(
    state: IssuerState,
    client: Client,
    form: dict[str, str],
    proof: DPoPProof | None,
    decision: Decision,
) -> dict[str, Any]:
    # Tokens for the issuer's own endpoints stay bearer tokens (RFC 9449 §5 lets the issuer say so with
    # token_type Bearer): those endpoints take `Authorization: Bearer` only.
    del proof
    allowed = client.scopes & ISSUER_SCOPES
    scopes = _requested_scope(form, allowed)
    decision.sub, decision.scope = client.client_id, format_scope(scopes)
    if not scopes or not scopes <= allowed:
        raise InvalidScope("client_credentials grants only issuer scopes this client is registered for")
    scope = format_scope(scopes)
    minted = await state.minter.access_token(
        sub=client.client_id,
        client_id=client.client_id,
        scope=scope,
        audience=state.settings.issuer_url,
        now=state.clock(),
        lifetime=state.settings.issuer_token_lifetime,
        act=False,
    )
    decision.issued(minted)
    return _answer(minted, scope, None)


async def _session_grant(state: IssuerState, subject_token: str) -> dict[str, Any]:
    await state.ring_keys.sync()
    try:
        return await state.grants.verify_async(subject_token)
    except TokenError as exc:
        raise InvalidGrant(
            "the subject_token is not a valid session grant", reason=f"grant_{exc.code}"
        ) from None


async def _token_exchange(
    state: IssuerState,
    client: Client,
    form: dict[str, str],
    proof: DPoPProof | None,
    decision: Decision,
) -> dict[str, Any]:
    subject_token = required_param(form, "subject_token")
    if required_param(form, "subject_token_type") != TOKEN_TYPE_JWT:
        raise InvalidRequest(f"subject_token_type must be {TOKEN_TYPE_JWT}")
    requested_type = optional_param(form, "requested_token_type")
    if requested_type not in (None, TOKEN_TYPE_ACCESS):
        raise InvalidRequest(f"requested_token_type must be {TOKEN_TYPE_ACCESS}")
    if optional_param(form, "actor_token") or optional_param(form, "actor_token_type"):
        raise InvalidRequest("actor_token is not supported: the authenticated client is the actor")
    resource = _resource(state, form)
    requested = _requested_scope(form, DEFAULT_EXCHANGE_SCOPE)
    grant = await _session_grant(state, subject_token)
    decision.sub, decision.scope = grant.get("sub"), format_scope(requested)
    decision.sid = grant.get("sid") if isinstance(grant.get("sid"), str) else None
    may_act = grant.get("may_act")
    if not isinstance(may_act, dict) or may_act.get("sub") != client.client_id:
        raise InvalidGrant(
            "the session grant does not name this client as its actor", reason="grant_not_actor"
        )
    sid = grant.get("sid")
    if not isinstance(sid, str) or not sid:
        raise InvalidGrant("the session grant has no session id", reason="grant_no_sid")
    try:
        granted = parse_scope(grant["scope"])
    except InvalidScope:
        raise InvalidGrant("the session grant's scope is malformed", reason="grant_bad_scope") from None
    holdable = granted & client.scopes & RESOURCE_SCOPES
    if not requested <= holdable:
        raise InvalidScope("the requested scope exceeds the session grant or the client's registration")
    if TRANSACT in requested:
        raise InvalidRequest(
            "a transact token comes from the refresh grant with authorization_details",
            reason="exchange_transact",
        )
    # Checked last so a request refused above does not burn the grant.
    if not await state.replay.first_use(f"grant:{grant['jti']}", float(grant["exp"]) + CLOCK_LEEWAY):
        raise InvalidGrant("the session grant was already exchanged", reason="grant_replayed")
    now = state.clock()
    scope = format_scope(requested)
    minted = await state.minter.access_token(
        sub=grant["sub"],
        client_id=client.client_id,
        scope=scope,
        audience=resource,
        now=now,
        lifetime=state.settings.access_token_lifetime,
        sid=sid,
        jkt=_jkt(proof),
    )
    # The family is bound to the proof's key for its whole life (RFC 9449 §5).
    # The family's id comes with it: a `peek` to learn it was two more Redis round trips per exchange.
    refresh, decision.family = await state.refresh.create_family(
        client_id=client.client_id,
        sub=grant["sub"],
        sid=sid,
        scope=format_scope(holdable),
        now=now,
        jkt=_jkt(proof),
    )
    decision.issued(minted)
    return _answer(minted, scope, _jkt(proof), refresh_token=refresh, issued_token_type=TOKEN_TYPE_ACCESS)


async def _refresh_token(
    state: IssuerState,
    client: Client,
    form: dict[str, str],
    proof: DPoPProof | None,
    decision: Decision,
) -> dict[str, Any]:
    token = required_param(form, "refresh_token")
    resource = _resource(state, form)
    family = await state.refresh.peek(token)
    own = family if family is not None and family.client_id == client.client_id else None
    if own is not None:
        require_key(proof, own.jkt)  # before spending: a wrong key changes nothing
    scope_param = optional_param(form, "scope")
    decision.scope = scope_param
    if family is not None:
        # Known before spending, so a reuse (theft signal) is written with its family, user and session.
        decision.family, decision.sub, decision.sid = family.family_id, family.sub, family.sid
    asked = parse_scope(scope_param) if scope_param is not None else None
    # Checked before spending, so a refused request does not cost the client its token.
    if own is not None and asked is not None and not asked <= parse_scope(own.scope):
        raise InvalidScope("the requested scope exceeds the refresh token's scope")
    if own is not None and asked is None:
        asked = _default_scope(own)
    detail = requested_detail(form, asked or frozenset())
    if detail is None:
        return await _plain_refresh(state, client, token, asked, resource, proof, decision)
    decision.event, decision.scope = "token.transact", TRANSACT
    return await _transact_refresh(state, client, token, own, detail, resource, proof, decision)


def _default_scope(family: RefreshFamily) -> frozenset[str]:
    # Without `scope`, everything the family holds but `transact`, which needs authorization_details.
    scopes = parse_scope(family.scope) - {TRANSACT}
    if not scopes:
        raise InvalidRequest("scope is required: this refresh token holds only transact")
    return scopes


async def _plain_refresh(
    state: IssuerState,
    client: Client,
    token: str,
    asked: frozenset[str] | None,
    resource: str,
    proof: DPoPProof | None,
    decision: Decision,
) -> dict[str, Any]:
    now = state.clock()
    family, next_token = await state.refresh.spend(
        token, client_id=client.client_id, now=now, jkt=_jkt(proof)
    )
    decision.family, decision.sub, decision.sid = family.family_id, family.sub, family.sid
    requested = asked if asked is not None else _default_scope(family)
    if not requested <= parse_scope(family.scope):
        raise InvalidScope("the requested scope exceeds the refresh token's scope")
    scope = format_scope(requested)
    minted = await state.minter.access_token(
        sub=family.sub,
        client_id=client.client_id,
        scope=scope,
        audience=resource,
        now=now,
        lifetime=state.settings.access_token_lifetime,
        sid=family.sid,
        jkt=_jkt(proof),
    )
    decision.scope = scope
    decision.issued(minted)
    return _answer(minted, scope, _jkt(proof), refresh_token=next_token)


async def _transact_refresh(
    state: IssuerState,
    client: Client,
    token: str,
    own: RefreshFamily | None,
    detail: AuthorizationDetail,
    resource: str,
    proof: DPoPProof | None,
    decision: Decision,
) -> dict[str, Any]:
    """A single-use token for exactly one movement, within the session's approval threshold."""
    if own is None:
        # Unknown, revoked or another client's token: spending it gives the usual answer and rules.
        await state.refresh.spend(token, client_id=client.client_id, now=state.clock(), jkt=_jkt(proof))
        raise InvalidGrant("the refresh token is invalid, expired or revoked", reason="refresh_unknown")
    # Before spending: above the threshold the client keeps its refresh token and asks the user instead.
    await reserve(state, own, detail)
    try:
        now = state.clock()
        family, next_token = await state.refresh.spend(
            token, client_id=client.client_id, now=now, jkt=_jkt(proof)
        )
    except BaseException:
        await state.spending.release(own.sid, detail.cents)
        raise
    minted = await state.minter.access_token(
        sub=family.sub,
        client_id=client.client_id,
        scope=TRANSACT,
        audience=resource,
        now=now,
        lifetime=state.settings.transact_token_lifetime,
        sid=family.sid,
        authorization_details=detail.claim(),
        jkt=_jkt(proof),
    )
    decision.issued(minted)
    return _answer(minted, TRANSACT, _jkt(proof), refresh_token=next_token)


async def _ciba(
    state: IssuerState,
    client: Client,
    form: dict[str, str],
    proof: DPoPProof | None,
    decision: Decision,
) -> dict[str, Any]:
    return _answer(await ciba_token(state, client, form, decision, proof), TRANSACT, _jkt(proof))


_GRANTS = {
    GRANT_CLIENT_CREDENTIALS: _client_credentials,
    GRANT_TOKEN_EXCHANGE: _token_exchange,
    GRANT_REFRESH: _refresh_token,
    GRANT_CIBA: _ciba,
}


async def token_response(
    state: IssuerState,
    form: dict[str, str],
    authorization: str | None,
    decision: Decision,
    dpop: Sequence[str] = (),
) -> dict[str, Any]:
    """The token response for a parsed `/token` form and its `DPoP` header values, or an OAuthError;
    `decision` learns what the request is about."""
    grant_type = required_param(form, "grant_type")
    decision.event = _EVENTS.get(grant_type or "", decision.event)
    client = await state.clients.authenticate(form, authorization=authorization)
    decision.client_id = client.client_id
    handler = _GRANTS.get(grant_type or "")
    if handler is None:
        raise UnsupportedGrantType("grant_type is not supported by this issuer")
    if not client.may_use(grant_type or ""):
        raise UnauthorizedClient("this client is not registered for this grant_type")
    proof = await state.dpop.proof(dpop, htu=state.settings.token_endpoint, client=client)
    answer = await handler(state, client, form, proof, decision)
    state.metrics.issued(grant_type)
    return answer
