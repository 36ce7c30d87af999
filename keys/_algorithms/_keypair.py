"""A private signing key with its algorithm and RFC 7638 kid: generation, PKCS#8 PEM and the public JWK."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from cryptography.exceptions import UnsupportedAlgorithm as _CryptoUnsupported
from cryptography.hazmat.primitives import serialization

from keys._algorithms._base import Algorithm, JwsAlgorithm, PrivateKey, PublicKey
from keys._algorithms._registry import BY_KTY, by_name, of_key
from keys._errors import KeyMaterialError
from keys._jose._b64 import b64url_encode


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) over the required members only."""
    algorithm = BY_KTY.get(str(jwk.get("kty")))
    members = algorithm.thumbprint_members if algorithm is not None else None
    if members is None or any(not isinstance(jwk.get(m), str) for m in members):
        raise KeyMaterialError("JWK lacks the members its kty requires")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode()).digest())


def public_members(public_key: PublicKey) -> dict[str, str]:
    """The public JWK members of a key (no kid, alg or use)."""
    return of_key(public_key).public_members(public_key)


@dataclass(frozen=True)
class KeyPair:
    """A private signing key with its algorithm and RFC 7638 kid."""

    private_key: PrivateKey = field(repr=False)
    alg: Algorithm
    kid: str
    algorithm: JwsAlgorithm = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        algorithm = by_name(self.alg)
        if not algorithm.holds(self.private_key):
            raise KeyMaterialError(f"the private key is not an {self.alg} key")
        object.__setattr__(self, "algorithm", algorithm)

    @classmethod
    def from_private_key(cls, private_key: PrivateKey) -> KeyPair:
        algorithm = of_key(private_key)  # KeyMaterialError for any other type (DSA, X25519, ...)
        algorithm.check_private(private_key)
        return cls(
            private_key, algorithm.name, thumbprint(algorithm.public_members(private_key.public_key()))
        )

    @classmethod
    def from_pem(cls, pem: bytes, passphrase: bytes | None) -> KeyPair:
        try:
            key = serialization.load_pem_private_key(pem, password=passphrase)
        except (ValueError, TypeError, _CryptoUnsupported) as exc:
            # cryptography's messages name the cause (bad passphrase, bad format), never key bytes.
            raise KeyMaterialError(f"cannot load private key: {exc}") from None
        return cls.from_private_key(cast(PrivateKey, key))  # of_key refuses the types we do not sign with

    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        return {
            **self.algorithm.public_members(self.public_key()),
            "kid": self.kid,
            "alg": self.alg,
            "use": "sig",
        }

    def sign(self, signing_input: bytes) -> bytes:
        """The raw JWS signature of `signing_input` by this key."""
        return self.algorithm.sign(self.private_key, signing_input)

    def private_pem(self, passphrase: bytes | None) -> bytes:
        """PKCS#8 PEM, encrypted with the passphrase when one is given."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
        )
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )


def generate_key(alg: Algorithm = "ES256") -> KeyPair:
    """A fresh key: P-256 for ES256, RSA 3072 for RS256, Ed25519 for EdDSA."""
    return KeyPair.from_private_key(by_name(alg).generate())
