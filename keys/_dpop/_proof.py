"""Creating a DPoP proof (RFC 9449 §4.2): a `dpop+jwt` JWS over one request, signed by the client's key."""

from __future__ import annotations

import hashlib
import secrets

import orjson

from keys._algorithms._base import Algorithm
from keys._algorithms._keypair import KeyPair
from keys._dpop._htu import target_uri
from keys._errors import KeyMaterialError
from keys._jose._b64 import b64url_bytes, b64url_encode

DPOP_TYP = "dpop+jwt"
DPOP_ALGORITHMS: tuple[Algorithm, ...] = ("ES256", "EdDSA")
"""Proof algorithms: asymmetric and compact only (RFC 9449 §11.6 forbids `none` and MAC algorithms)."""


def access_token_hash(access_token: str) -> str:
    """The `ath` claim: base64url SHA-256 of the ASCII access token (RFC 9449 §4.2)."""
    return b64url_encode(hashlib.sha256(access_token.encode("ascii", "surrogateescape")).digest())


# kid (the key's thumbprint) -> header segment. Public values only: no reference to a private key outlives
# the call that owns it.
_HEADERS: dict[str, bytes] = {}
_HEADER_CACHE_SIZE = 64


def _header_segment(key: KeyPair) -> bytes:
    # A client signs every proof of its key with one header, so it is encoded once per key (with its dot).
    segment = _HEADERS.get(key.kid)
    if segment is None:
        header = {"typ": DPOP_TYP, "alg": key.alg, "jwk": key.algorithm.public_members(key.public_key())}
        segment = b64url_bytes(orjson.dumps(header)) + b"."
        if len(_HEADERS) >= _HEADER_CACHE_SIZE:
            _HEADERS.clear()
        _HEADERS[key.kid] = segment
    return segment


def dpop_proof(
    key: KeyPair,
    *,
    htm: str,
    htu: str,
    now: float,
    access_token: str | None = None,
    nonce: str | None = None,
) -> str:
    """A fresh proof for one request: `htm` its method, `htu` its URI (query and fragment dropped).

    `access_token` adds `ath` (a request to a resource server), `nonce` the receiver's last `DPoP-Nonce`.
    """
    if key.alg not in DPOP_ALGORITHMS:
        raise KeyMaterialError(f"DPoP proofs are signed with {' or '.join(DPOP_ALGORITHMS)} keys only")
    claims: dict[str, str | int] = {
        "jti": secrets.token_urlsafe(16),
        "htm": htm,
        "htu": target_uri(htu),
        "iat": int(now),
    }
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    if nonce is not None:
        claims["nonce"] = nonce
    signing_input = _header_segment(key) + b64url_bytes(orjson.dumps(claims))
    return (signing_input + b"." + b64url_bytes(key.sign(signing_input))).decode("ascii")
