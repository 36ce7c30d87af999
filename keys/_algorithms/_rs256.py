"""RS256 (RFC 7518 §3.3): RSASSA-PKCS1-v1_5 with SHA-256; JWK kty RSA; at least 2048 bits, 3072 generated."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keys._algorithms._base import JwsAlgorithm, PrivateKey, PublicKey
from keys._algorithms._members import int_member, uint_b64
from keys._errors import BadSignature, KeyMaterialError

RSA_BITS = 3072
MIN_RSA_BITS = 2048
_PKCS1V15 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


class RS256(JwsAlgorithm):
    name = "RS256"
    kty = "RSA"
    thumbprint_members = ("e", "kty", "n")

    def generate(self) -> PrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)

    def holds(self, key: object) -> bool:
        return isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey)

    def check_private(self, key: PrivateKey) -> None:
        if cast(rsa.RSAPrivateKey, key).key_size < MIN_RSA_BITS:
            raise KeyMaterialError("RSA keys must have at least 2048 bits")

    def sign(self, key: PrivateKey, signing_input: bytes) -> bytes:
        return cast(rsa.RSAPrivateKey, key).sign(signing_input, _PKCS1V15, _SHA256)

    def verify(self, key: PublicKey, signing_input: bytes, signature: bytes) -> None:
        try:
            cast(rsa.RSAPublicKey, key).verify(signature, signing_input, _PKCS1V15, _SHA256)
        except InvalidSignature:
            raise BadSignature("signature does not verify") from None

    def public_members(self, key: PublicKey) -> dict[str, str]:
        numbers = cast(rsa.RSAPublicKey, key).public_numbers()
        return {"kty": "RSA", "n": uint_b64(numbers.n), "e": uint_b64(numbers.e)}

    def public_key(self, jwk: Mapping[str, Any]) -> PublicKey:
        try:
            key = rsa.RSAPublicNumbers(int_member(jwk, "e"), int_member(jwk, "n")).public_key()
        except ValueError as exc:
            raise KeyMaterialError("invalid RSA public key") from exc
        if key.key_size < MIN_RSA_BITS:
            raise KeyMaterialError("RSA keys must have at least 2048 bits")
        return key
