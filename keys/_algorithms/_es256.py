"""ES256 (RFC 7518 §3.4): ECDSA on P-256 with SHA-256; JWK kty EC, crv P-256; signatures are r || s."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from keys._algorithms._base import JwsAlgorithm, PrivateKey, PublicKey
from keys._algorithms._members import int_member, uint_b64
from keys._errors import BadSignature, KeyMaterialError

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


class ES256(JwsAlgorithm):
    name = "ES256"
    kty = "EC"
    thumbprint_members = ("crv", "kty", "x", "y")

    def generate(self) -> PrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def holds(self, key: object) -> bool:
        return isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey)

    def check_private(self, key: PrivateKey) -> None:
        if not isinstance(cast(ec.EllipticCurvePrivateKey, key).curve, ec.SECP256R1):
            raise KeyMaterialError("only P-256 EC keys are supported")

    def sign(self, key: PrivateKey, signing_input: bytes) -> bytes:
        der = cast(ec.EllipticCurvePrivateKey, key).sign(signing_input, _ECDSA_SHA256)
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def verify(self, key: PublicKey, signing_input: bytes, signature: bytes) -> None:
        if len(signature) != 64:
            raise BadSignature("ES256 signature is not 64 bytes")
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        try:
            cast(ec.EllipticCurvePublicKey, key).verify(der, signing_input, _ECDSA_SHA256)
        except InvalidSignature:
            raise BadSignature("signature does not verify") from None

    def public_members(self, key: PublicKey) -> dict[str, str]:
        numbers = cast(ec.EllipticCurvePublicKey, key).public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": uint_b64(numbers.x, 32), "y": uint_b64(numbers.y, 32)}

    def public_key(self, jwk: Mapping[str, Any]) -> PublicKey:
        if jwk.get("crv") != "P-256":
            raise KeyMaterialError("only P-256 EC keys are supported")
        numbers = ec.EllipticCurvePublicNumbers(int_member(jwk, "x"), int_member(jwk, "y"), ec.SECP256R1())
        try:
            return numbers.public_key()  # refuses points not on the curve
        except ValueError as exc:
            raise KeyMaterialError("invalid EC public key") from exc
