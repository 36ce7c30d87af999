"""Bearer tokens for the issuer's own endpoints (`/sessions`, `/admin/*`): `aud` = issuer URL, and a scope."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from issuer._audit import Decision
from issuer._oauth._clients import ClientRegistry
from issuer._oauth._errors import InsufficientScope, InvalidScope, InvalidToken
from issuer._oauth._scope import parse_scope
from issuer._signing._mint import ACCESS_TOKEN_TYP
from issuer._signing._ring_keys import RingKeys
from keys import TokenError, Verifier, VerifyPolicy

NO_TOKEN = "no_token"  # noqa: S105


class BearerGuard:
    """Checks `Authorization: Bearer` against the issuer's own keys and a required scope (RFC 6750)."""

    def __init__(
        self,
        keys: RingKeys,
        *,
        issuer: str,
        max_lifetime: int,
        registry: ClientRegistry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self.registry = registry
        """The clients whose tokens count; replaced when the registry is reloaded (SIGHUP)."""
        policy = VerifyPolicy(
            issuer=issuer,
            audience=issuer,
            typ=ACCESS_TOKEN_TYP,
            required=frozenset({"sub", "jti", "client_id", "scope"}),
            max_lifetime=max_lifetime,
        )
        self._verifier = Verifier(keys, policy, clock=clock)

    async def require(
        self, authorization: str | None, scope: str, decision: Decision | None = None
    ) -> dict[str, Any]:
        """The token's claims when it is valid and carries `scope`; `decision` learns the client."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise InvalidToken("a bearer token is required", reason=NO_TOKEN)
        await self._keys.sync()
        try:
            claims = await self._verifier.verify_async(token)
        except TokenError as exc:
            raise InvalidToken("the bearer token is invalid", reason=f"bearer_{exc.code}") from None
        if decision is not None and isinstance(claims.get("client_id"), str):
            decision.client_id = claims["client_id"]
        if "cnf" in claims:
            # A sender-constrained token is never a bearer token (RFC 9449 §7.2).
            raise InvalidToken("the bearer token is invalid", reason="bearer_dpop_bound")
        client = self.registry.get(str(claims["client_id"]))
        if client is None or client.disabled:
            # A client removed or disabled since its token was issued is refused from then on.
            raise InvalidToken("the bearer token is invalid", reason="bearer_client_disabled")
        try:
            granted = parse_scope(claims["scope"])
        except InvalidScope:
            granted = frozenset()
        if scope not in granted:
            raise InsufficientScope(f"this endpoint needs the scope {scope}", scope=scope)
        return claims
