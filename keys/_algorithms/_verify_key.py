"""A public key imported from a JWK, bound to one algorithm, checking raw JWS signatures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from keys._algorithms._keypair import ALGORITHMS, Algorithm, PublicKey, public_members, thumbprint
from keys._errors import BadSignature, KeyMaterialError, MalformedToken
from keys._jose._b64 import b64url_decode

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_PKCS1V15 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_ALG_BY_KTY = {"EC": "ES256", "RSA": "RS256", "OKP": "EdDSA"}


def _uint(value: Any, name: str) -> int:
    if not isinstance(value, str) or not value:
        raise KeyMaterialError(f"JWK member {name} is missing")
    try:
        return int.from_bytes(b64url_decode(value), "big")
    except MalformedToken:
        raise KeyMaterialError(f"JWK member {name} is not base64url") from None


def _import_public(jwk: Mapping[str, Any]) -> PublicKey:
    kty = jwk.get("kty")
    try:
        if kty == "EC":
            if jwk.get("crv") != "P-256":
                raise KeyMaterialError("only P-256 EC keys are supported")
            numbers = ec.EllipticCurvePublicNumbers(
                _uint(jwk.get("x"), "x"), _uint(jwk.get("y"), "y"), ec.SECP256R1()
            )
            return numbers.public_key()  # refuses points not on the curve
        if kty == "RSA":
            rsa_key = rsa.RSAPublicNumbers(_uint(jwk.get("e"), "e"), _uint(jwk.get("n"), "n")).public_key()
            if rsa_key.key_size < 2048:
                raise KeyMaterialError("RSA keys must have at least 2048 bits")
            return rsa_key
        if kty == "OKP":
            if jwk.get("crv") != "Ed25519":
                raise KeyMaterialError("only Ed25519 OKP keys are supported")
            x = jwk.get("x")
            if not isinstance(x, str):
                raise KeyMaterialError("JWK member x is missing")
            return ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(x))
    except (ValueError, MalformedToken) as exc:
        raise KeyMaterialError(f"invalid {kty} public key") from exc
    raise KeyMaterialError("unsupported kty")


@dataclass(frozen=True)
class VerifyKey:
    """A verification key whose algorithm comes from the key, never from a token header."""

    kid: str
    alg: Algorithm
    public_key: PublicKey = field(repr=False)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> VerifyKey:
        if not isinstance(jwk, Mapping):
            raise KeyMaterialError("JWK is not an object")
        if _PRIVATE_MEMBERS & jwk.keys():
            raise KeyMaterialError("JWK carries private members")
        if jwk.get("use", "sig") != "sig":
            raise KeyMaterialError("JWK use is not sig")
        inferred = _ALG_BY_KTY.get(str(jwk.get("kty")))
        alg = jwk.get("alg", inferred)
        if alg not in ALGORITHMS or alg != inferred:
            raise KeyMaterialError("JWK alg does not match its key type")
        public_key = _import_public(jwk)
        kid = jwk.get("kid")
        if kid is None:
            kid = thumbprint(public_members(public_key))
        if not isinstance(kid, str) or not kid:
            raise KeyMaterialError("JWK kid is not a string")
        return cls(kid, alg, public_key)

    @classmethod
    def from_public_key(cls, public_key: PublicKey, alg: Algorithm, kid: str | None = None) -> VerifyKey:
        return cls(kid or thumbprint(public_members(public_key)), alg, public_key)

    def check_signature(self, signing_input: bytes, signature: bytes) -> None:
        """Raise BadSignature unless `signature` is this key's JWS signature over `signing_input`."""
        key = self.public_key
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                if len(signature) != 64:
                    raise BadSignature("ES256 signature is not 64 bytes")
                der = encode_dss_signature(
                    int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
                )
                key.verify(der, signing_input, _ECDSA_SHA256)
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, signing_input, _PKCS1V15, _SHA256)
            else:
                key.verify(signature, signing_input)
        except InvalidSignature:
            raise BadSignature("signature does not verify") from None
