"""`private_key_jwt` client authentication (RFC 7523 §2.2, §3): the only way a client authenticates.

The assertion's `aud` may be the token endpoint URL or the issuer URL: RFC 7523 §3 asks for a value that
identifies the authorization server and names the token endpoint URL as one such value; the issuer
identifier is the value later guidance (OIDC, RFC 7523bis) prefers, so both are accepted, nothing else.

The header's `kid` names the key, and through it the client. A client with exactly one key may leave it out
(docs/architecture.md): the client is then the `client_id` parameter, else the assertion's `sub` (equal
to its `iss`), read unverified only to choose whose one key checks the signature; a client with several
keys is refused rather than having each key tried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from issuer._oauth._clients import Client, ClientRegistry
from issuer._oauth._errors import InvalidClient, TemporarilyUnavailable
from keys import (
    ASSERTION_TYP,
    CLOCK_LEEWAY,
    JWT_BEARER,
    JWKSCache,
    KeySource,
    KeysUnavailable,
    ReplayCache,
    StaticKeys,
    TokenError,
    TokenHeader,
    UnknownKey,
    Verifier,
    VerifyPolicy,
    WrongAudience,
    unverified_claims,
)

MAX_ASSERTION_LIFETIME = 300
MAX_ASSERTION_SIZE = 4096


@dataclass(frozen=True)
class _ClientVerifiers:
    client: Client
    endpoint: Verifier
    issuer: Verifier


def _refuse(reason: str, description: str = "client authentication failed") -> InvalidClient:
    return InvalidClient(description, reason=reason)


class ClientAuthenticator:
    """Authenticates clients by a signed, short-lived, single-use JWT made with a registered key."""

    def __init__(
        self,
        registry: ClientRegistry,
        *,
        issuer: str,
        token_endpoint: str,
        replay: ReplayCache,
        http: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
        leeway: int = CLOCK_LEEWAY,
    ) -> None:
        self._replay = replay
        self._clock = clock
        self._leeway = leeway
        # Every header rule (size, alg, typ, forbidden headers) is checked before the kid is looked at; the
        # header policy is the same for every client, and this verifier never looks up a key.
        self._headers = Verifier(
            StaticKeys.from_keys([]),
            VerifyPolicy(
                issuer,
                token_endpoint,
                typ=ASSERTION_TYP,
                typ_optional=True,
                kid_optional=True,
                max_size=MAX_ASSERTION_SIZE,
            ),
        )
        self._by_kid: dict[str, str] = {}
        self._clients: dict[str, _ClientVerifiers] = {}
        for client in registry.clients():
            source: KeySource
            if client.jwks_uri is not None:
                source = JWKSCache(client.jwks_uri, http, clock=clock)
            else:
                static = StaticKeys(client.jwks or {"keys": []})
                self._by_kid.update(dict.fromkeys(static.kids, client.client_id))
                source = static
            self._clients[client.client_id] = _ClientVerifiers(
                client,
                self._verifier(source, client.client_id, token_endpoint),
                self._verifier(source, client.client_id, issuer),
            )

    def _verifier(self, source: KeySource, client_id: str, audience: str) -> Verifier:
        policy = VerifyPolicy(
            issuer=client_id,
            audience=audience,
            typ=ASSERTION_TYP,
            typ_optional=True,
            # Without a kid the key source answers with its only key, or with none when it holds several.
            kid_optional=True,
            leeway=self._leeway,
            max_lifetime=MAX_ASSERTION_LIFETIME,
            max_size=MAX_ASSERTION_SIZE,
        )
        # Assertions are single-use (the replay cache refuses a second): caching them would only grow memory.
        return Verifier(source, policy, clock=self._clock, cache_tokens=False)

    def _header(self, assertion: str) -> TokenHeader:
        try:
            return self._headers.check_header(assertion)
        except TokenError as exc:
            raise _refuse(f"assertion_{exc.code}") from None

    def _find(self, kid: str, claimed: str | None) -> _ClientVerifiers:
        client_id = self._by_kid.get(kid, claimed)
        entry = self._clients.get(client_id) if client_id is not None else None
        if entry is None or (claimed is not None and claimed != client_id):
            raise _refuse("unknown_client")
        if kid not in self._by_kid and entry.client.jwks is not None:
            raise _refuse("unknown_client_key")
        return entry

    def _find_without_kid(self, assertion: str, claimed: str | None) -> _ClientVerifiers:
        """The client a kid-less assertion names: `client_id` when sent, else its `sub`, equal to its `iss`.

        The name is unverified: it only chooses whose single key checks the signature. That client's
        verifier then demands `iss` == the client, and `authenticate` demands `sub` == the client.
        """
        if claimed is None:
            try:
                claims = unverified_claims(assertion)
            except TokenError as exc:
                raise _refuse(f"assertion_{exc.code}") from None
            sub = claims.get("sub")
            if not isinstance(sub, str) or sub != claims.get("iss"):
                raise _refuse("assertion_names_no_client")
            claimed = sub
        entry = self._clients.get(claimed)
        if entry is None:
            raise _refuse("unknown_client")
        return entry

    async def _claims(self, entry: _ClientVerifiers, assertion: str, kid: str | None) -> dict[str, Any]:
        try:
            try:
                return await entry.endpoint.verify_async(assertion)
            except WrongAudience:
                return await entry.issuer.verify_async(assertion)
        except UnknownKey as exc:
            # Without a kid, an unknown key means the client does not have exactly one key.
            raise _refuse("assertion_kid_required" if kid is None else f"assertion_{exc.code}") from None
        except TokenError as exc:
            raise _refuse(f"assertion_{exc.code}") from None
        except KeysUnavailable:
            # The client's JWKS URL cannot be read: an outage, not a bad assertion.
            raise TemporarilyUnavailable(
                "the client's keys cannot be fetched right now", reason="client_jwks_unavailable"
            ) from None

    async def authenticate(self, form: Mapping[str, str], *, authorization: str | None = None) -> Client:
        """The registered client that signed this request's assertion; InvalidClient otherwise."""
        if authorization is not None or "client_secret" in form:
            raise _refuse("wrong_auth_method", "only private_key_jwt client authentication is accepted")
        assertion_type = form.get("client_assertion_type")
        assertion = form.get("client_assertion")
        if not assertion_type or not assertion:
            raise _refuse("no_client_auth", "client authentication with private_key_jwt is required")
        if assertion_type != JWT_BEARER:
            raise _refuse("wrong_assertion_type", f"client_assertion_type must be {JWT_BEARER}")
        kid = self._header(assertion).kid
        claimed = form.get("client_id") or None
        entry = self._find(kid, claimed) if kid is not None else self._find_without_kid(assertion, claimed)
        claims = await self._claims(entry, assertion, kid)
        client_id = entry.client.client_id
        if entry.client.disabled:
            raise _refuse("client_disabled")
        if claims.get("sub") != client_id:
            raise _refuse("assertion_wrong_sub")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise _refuse("assertion_no_jti")
        if not await self._replay.first_use(f"assertion:{client_id}:{jti}", claims["exp"] + self._leeway):
            raise _refuse("assertion_replayed")
        return entry.client
