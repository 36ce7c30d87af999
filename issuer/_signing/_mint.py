"""Signing the issuer's tokens with the key ring's active key: access tokens and session grants."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from keys import Algorithm, KeyStore, sign

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105
SESSION_GRANT_TYP = "session-grant+jwt"


@dataclass(frozen=True)
class Minted:
    token: str = field(repr=False)
    jti: str
    expires_in: int
    kid: str
    exp: int


class Minter:
    """Builds and signs claims; the key is looked up per token so rotation takes effect at once."""

    def __init__(self, store: KeyStore, *, issuer: str, alg: Algorithm) -> None:
        self._store = store
        self._issuer = issuer
        self._alg = alg

    async def _sign(self, claims: dict[str, Any], typ: str, lifetime: int) -> Minted:
        ring = await self._store.current()
        key = ring.signing_key(self._alg)
        token = sign(claims, key, typ=typ)
        return Minted(token, claims["jti"], lifetime, key.kid, claims["exp"])

    def _base(self, *, sub: str, aud: str, now: float, lifetime: int) -> dict[str, Any]:
        issued = int(now)
        return {
            "iss": self._issuer,
            "sub": sub,
            "aud": aud,
            "iat": issued,
            "exp": issued + lifetime,
            "jti": secrets.token_urlsafe(16),
        }

    async def access_token(
        self,
        *,
        sub: str,
        client_id: str,
        scope: str,
        audience: str,
        now: float,
        lifetime: int,
        sid: str | None = None,
        act: bool = True,
        authorization_details: list[dict[str, str]] | None = None,
        jkt: str | None = None,
    ) -> Minted:
        """An RFC 9068 access token; `act` names the client acting for `sub` (RFC 8693 delegation).

        `authorization_details` (RFC 9396) binds a `transact` token to the one movement it may make;
        `jkt` binds it to a DPoP key (RFC 9449 §6.1: `cnf.jkt`, that key's RFC 7638 thumbprint).
        """
        claims = self._base(sub=sub, aud=audience, now=now, lifetime=lifetime)
        claims.update(nbf=claims["iat"], client_id=client_id, scope=scope)
        if sid is not None:
            claims["sid"] = sid
        if act:
            claims["act"] = {"sub": client_id}
        if authorization_details is not None:
            claims["authorization_details"] = authorization_details
        if jkt is not None:
            claims["cnf"] = {"jkt": jkt}
        return await self._sign(claims, ACCESS_TOKEN_TYP, lifetime)

    async def session_grant(
        self, *, sub: str, sid: str, scope: str, actor: str, now: float, lifetime: int
    ) -> Minted:
        """A session grant for the issuer itself, exchangeable once by `actor`."""
        claims = self._base(sub=sub, aud=self._issuer, now=now, lifetime=lifetime)
        claims.update(sid=sid, scope=scope, may_act={"sub": actor})
        return await self._sign(claims, SESSION_GRANT_TYP, lifetime)
