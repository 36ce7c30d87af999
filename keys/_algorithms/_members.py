"""Integer JWK members (RFC 7518 §2 "Base64urlUInt"), read and written strictly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keys._errors import KeyMaterialError, MalformedToken
from keys._jose._b64 import b64url_decode, b64url_encode


def uint_b64(value: int, length: int | None = None) -> str:
    """Big-endian base64url of a non-negative integer, `length` bytes when given (EC coordinates)."""
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(size, "big"))


def int_member(jwk: Mapping[str, Any], name: str) -> int:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise KeyMaterialError(f"JWK member {name} is missing")
    try:
        return int.from_bytes(b64url_decode(value), "big")
    except MalformedToken:
        raise KeyMaterialError(f"JWK member {name} is not base64url") from None
