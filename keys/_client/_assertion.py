"""Building an RFC 7523 client assertion: what a client sends to authenticate with `private_key_jwt`."""

from __future__ import annotations

import secrets

from keys._algorithms._keypair import KeyPair
from keys._jose._sign import sign

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_TYP = "JWT"
ASSERTION_LIFETIME = 60


def client_assertion(
    client_id: str, key: KeyPair, audience: str, now: float, *, lifetime: int = ASSERTION_LIFETIME
) -> str:
    """A signed, single-use client assertion (`iss`=`sub`=client_id, `aud`=the token endpoint)."""
    issued = int(now)
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": issued,
        "exp": issued + lifetime,
        "jti": secrets.token_urlsafe(16),
    }
    return sign(claims, key, typ=ASSERTION_TYP)


def assertion_form(client_id: str, key: KeyPair, audience: str, now: float) -> dict[str, str]:
    """The two form parameters that authenticate a client at the token and revocation endpoints."""
    return {
        "client_assertion_type": JWT_BEARER,
        "client_assertion": client_assertion(client_id, key, audience, now),
    }
