"""ES256 (RFC 7518 §3.4): ECDSA on P-256 with SHA-256; JWK kty EC, crv P-256; signatures are r || s."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

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
        return _der_to_raw(der)

    def verify(self, key: PublicKey, signing_input: bytes, signature: bytes) -> None:
        if len(signature) != 64:
            raise BadSignature("ES256 signature is not 64 bytes")
        try:
            cast(ec.EllipticCurvePublicKey, key).verify(_raw_to_der(signature), signing_input, _ECDSA_SHA256)
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


def _der_to_raw(der: bytes) -> bytes:
    """r || s of the DER signature OpenSSL just made: SEQUENCE { INTEGER r, INTEGER s }, short lengths.

    Byte slicing instead of `decode_dss_signature` (two ints and back): a fifth of the signer's own cost.
    Anything but that exact shape goes through the full decoder.
    """
    if len(der) > 2 and der[0] == 0x30 and der[1] == len(der) - 2 and der[2] == 0x02:
        r_len = der[3]
        s_at = 4 + r_len
        if r_len <= 33 and s_at + 2 <= len(der) and der[s_at] == 0x02:
            s_len = der[s_at + 1]
            if s_len <= 33 and s_at + 2 + s_len == len(der):
                r = der[4:s_at].lstrip(b"\0")
                s = der[s_at + 2 :].lstrip(b"\0")
                if len(r) <= 32 and len(s) <= 32:
                    return r.rjust(32, b"\0") + s.rjust(32, b"\0")
    r_int, s_int = decode_dss_signature(der)
    return r_int.to_bytes(32, "big") + s_int.to_bytes(32, "big")


def _raw_to_der(signature: bytes) -> bytes:
    """The DER form OpenSSL verifies of a 64-byte r || s: SEQUENCE { INTEGER r, INTEGER s }.

    Built by slicing, as `_der_to_raw` reads it, instead of `encode_dss_signature` (two ints and back).
    """
    r = _der_integer(signature[:32])
    s = _der_integer(signature[32:])
    return b"\x30" + bytes((len(r) + len(s),)) + r + s  # at most 70 bytes: short-form lengths


def _der_integer(magnitude: bytes) -> bytes:
    """A DER INTEGER of an unsigned big-endian value: minimal, with a 0 byte before a set high bit."""
    value = magnitude.lstrip(b"\0") or b"\0"
    if value[0] & 0x80:
        value = b"\0" + value
    return b"\x02" + bytes((len(value),)) + value
