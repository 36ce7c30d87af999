"""Compact JWS signing (RFC 7515) with a key pair: the issuer's only signing path."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import orjson

from keys._algorithms._keypair import KeyPair
from keys._jose._b64 import b64url_encode


def signature_bytes(key: KeyPair, signing_input: bytes) -> bytes:
    """The raw JWS signature (RFC 7518 §3): r||s for ES256, PKCS#1 v1.5 for RS256, Ed25519 as is."""
    return key.sign(signing_input)


@lru_cache(maxsize=64)
def _header_segment(alg: str, kid: str, typ: str) -> str:
    # Every token a key signs with one typ shares its header, so it is encoded once.
    return b64url_encode(orjson.dumps({"alg": alg, "typ": typ, "kid": kid}))


def sign(claims: Mapping[str, Any], key: KeyPair, *, typ: str) -> str:
    """A compact JWS over `claims`, with the header `alg`, `typ` and `kid` of `key`."""
    # orjson writes compact JSON several times faster than json; it would write NaN as null, so refuse it.
    if any(type(value) is float and not math.isfinite(value) for value in claims.values()):
        raise ValueError("claims must not hold NaN or infinity")
    payload = b64url_encode(orjson.dumps(claims))
    signing_input = f"{_header_segment(key.alg, key.kid, typ)}.{payload}"
    return f"{signing_input}.{b64url_encode(key.sign(signing_input.encode('ascii')))}"
