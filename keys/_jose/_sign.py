"""Compact JWS signing (RFC 7515) with a key pair: the issuer's only signing path."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import orjson

from keys._algorithms._keypair import KeyPair
from keys._jose._b64 import b64url_bytes


def signature_bytes(key: KeyPair, signing_input: bytes) -> bytes:
    """The raw JWS signature (RFC 7518 §3): r||s for ES256, PKCS#1 v1.5 for RS256, Ed25519 as is."""
    return key.sign(signing_input)


@lru_cache(maxsize=64)
def _header_segment(alg: str, kid: str, typ: str) -> bytes:
    # Every token a key signs with one typ shares its header, so it is encoded once (with its dot).
    return b64url_bytes(orjson.dumps({"alg": alg, "typ": typ, "kid": kid})) + b"."


def sign(claims: Mapping[str, Any], key: KeyPair, *, typ: str) -> str:
    """A compact JWS over `claims`, with the header `alg`, `typ` and `kid` of `key`."""
    # orjson writes compact JSON several times faster than json; it would write NaN as null, so refuse it.
    # Only a document with a null in it can hide one: the scan runs for those alone.
    body = orjson.dumps(claims)
    if b"null" in body and any(type(v) is float and not math.isfinite(v) for v in claims.values()):
        raise ValueError("claims must not hold NaN or infinity")
    # Joined as bytes and decoded once: the key signs bytes, and each str round trip costs (bench_sign).
    signing_input = _header_segment(key.alg, key.kid, typ) + b64url_bytes(body)
    return (signing_input + b"." + b64url_bytes(key.sign(signing_input))).decode("ascii")
