"""A public key imported from a JWK, bound to one algorithm, checking raw JWS signatures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keys._algorithms._base import ALGORITHMS, Algorithm, JwsAlgorithm, PublicKey
from keys._algorithms._keypair import thumbprint
from keys._algorithms._registry import BY_KTY, by_name, of_key
from keys._errors import KeyMaterialError

PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
"""JWK members that hold private key material (RFC 7518 §6): a public key never carries one."""


@dataclass(frozen=True)
class VerifyKey:
    """A verification key whose algorithm comes from the key, never from a token header."""

    kid: str
    alg: Algorithm
    public_key: PublicKey = field(repr=False)
    algorithm: JwsAlgorithm = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        algorithm = by_name(self.alg)
        if not algorithm.holds(self.public_key):
            raise KeyMaterialError(f"the public key is not an {self.alg} key")
        object.__setattr__(self, "algorithm", algorithm)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> VerifyKey:
        if not isinstance(jwk, Mapping):
            raise KeyMaterialError("JWK is not an object")
        if PRIVATE_MEMBERS & jwk.keys():
            raise KeyMaterialError("JWK carries private members")
        if jwk.get("use", "sig") != "sig":
            raise KeyMaterialError("JWK use is not sig")
        algorithm = BY_KTY.get(str(jwk.get("kty")))
        alg = jwk.get("alg", algorithm.name if algorithm is not None else None)
        if alg not in ALGORITHMS or algorithm is None or alg != algorithm.name:
            raise KeyMaterialError("JWK alg does not match its key type")
        public_key = algorithm.public_key(jwk)
        kid = jwk.get("kid")
        if kid is None:
            kid = thumbprint(algorithm.public_members(public_key))
        if not isinstance(kid, str) or not kid:
            raise KeyMaterialError("JWK kid is not a string")
        return cls(kid, algorithm.name, public_key)

    @classmethod
    def from_public_key(cls, public_key: PublicKey, alg: Algorithm, kid: str | None = None) -> VerifyKey:
        members = of_key(public_key).public_members(public_key)
        return cls(kid or thumbprint(members), alg, public_key)

    def check_signature(self, signing_input: bytes, signature: bytes) -> None:
        """Raise BadSignature unless `signature` is this key's JWS signature over `signing_input`."""
        self.algorithm.verify(self.public_key, signing_input, signature)
