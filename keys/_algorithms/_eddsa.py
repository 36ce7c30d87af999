"""EdDSA (RFC 8037): Ed25519 only; JWK kty OKP, crv Ed25519."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from keys._algorithms._base import JwsAlgorithm, PrivateKey, PublicKey
from keys._errors import BadSignature, KeyMaterialError, MalformedToken
from keys._jose._b64 import b64url_decode, b64url_encode


class EdDSA(JwsAlgorithm):
    name = "EdDSA"
    kty = "OKP"
    thumbprint_members = ("crv", "kty", "x")

    def generate(self) -> PrivateKey:
        return ed25519.Ed25519PrivateKey.generate()

    def holds(self, key: object) -> bool:
        return isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey)

    def check_private(self, key: PrivateKey) -> None:
        return None  # Ed25519 has one size and one curve

    def sign(self, key: PrivateKey, signing_input: bytes) -> bytes:
        return cast(ed25519.Ed25519PrivateKey, key).sign(signing_input)

    def verify(self, key: PublicKey, signing_input: bytes, signature: bytes) -> None:
        try:
            cast(ed25519.Ed25519PublicKey, key).verify(signature, signing_input)
        except InvalidSignature:
            raise BadSignature("signature does not verify") from None

    def public_members(self, key: PublicKey) -> dict[str, str]:
        raw = cast(ed25519.Ed25519PublicKey, key).public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}

    def public_key(self, jwk: Mapping[str, Any]) -> PublicKey:
        if jwk.get("crv") != "Ed25519":
            raise KeyMaterialError("only Ed25519 OKP keys are supported")
        x = jwk.get("x")
        if not isinstance(x, str):
            raise KeyMaterialError("JWK member x is missing")
        try:
            return ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(x))
        except (ValueError, MalformedToken) as exc:
            raise KeyMaterialError("invalid OKP public key") from exc
