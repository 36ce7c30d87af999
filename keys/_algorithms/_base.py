"""One JWS algorithm (RFC 7518 §3) and its key type: the interface every algorithm class implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, get_args

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

Algorithm = Literal["ES256", "RS256", "EdDSA"]
ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class JwsAlgorithm(ABC):
    """Everything that differs between our algorithms, in one class each: generate, sign, verify, JWK.

    `KeyPair` and `VerifyKey` hold the algorithm of their key and call it; nothing else looks at key types.
    """

    name: ClassVar[Algorithm]
    kty: ClassVar[str]
    # RFC 7638 §3.2: the members a thumbprint hashes, in their sorted order.
    thumbprint_members: ClassVar[tuple[str, ...]]

    @abstractmethod
    def generate(self) -> PrivateKey:
        """A fresh private key of this algorithm."""

    @abstractmethod
    def holds(self, key: object) -> bool:
        """Whether `key` is a private or public key object of this algorithm's key type."""

    @abstractmethod
    def check_private(self, key: PrivateKey) -> None:
        """Refuse a key of the right type but too weak (curve, size): KeyMaterialError."""

    @abstractmethod
    def sign(self, key: PrivateKey, signing_input: bytes) -> bytes:
        """The raw JWS signature of `signing_input` (RFC 7518 §3)."""

    @abstractmethod
    def verify(self, key: PublicKey, signing_input: bytes, signature: bytes) -> None:
        """Raise BadSignature unless `signature` is the JWS signature of `signing_input` by `key`."""

    @abstractmethod
    def public_members(self, key: PublicKey) -> dict[str, str]:
        """The public JWK members of `key` (RFC 7517/7518 §6), without kid, alg or use."""

    @abstractmethod
    def public_key(self, jwk: Mapping[str, Any]) -> PublicKey:
        """The public key a JWK describes; KeyMaterialError for anything this algorithm refuses."""
