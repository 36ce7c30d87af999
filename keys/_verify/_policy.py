"""What a verifier demands of a token: issuer, audience, type, claims, leeway, lifetime and size."""

from __future__ import annotations

from dataclasses import dataclass, field

from keys._timing import CLOCK_LEEWAY

# iss, aud, exp and iat are always required; `required` names the claims a deployment adds.
ALWAYS_REQUIRED = frozenset({"iss", "aud", "exp", "iat"})
DEFAULT_REQUIRED = frozenset({"sub", "jti"})


def normalize_typ(typ: str) -> str:
    """RFC 7515 §4.1.9: media types compare case-insensitively and `application/` may be omitted."""
    lowered = typ.lower()
    if lowered.startswith("application/") and "/" not in lowered[12:]:
        return lowered[12:]
    return lowered


@dataclass(frozen=True, slots=True)
class VerifyPolicy:
    """The rules a token must meet; times are in seconds."""

    issuer: str
    audience: str
    typ: str = "at+jwt"
    required: frozenset[str] = DEFAULT_REQUIRED
    leeway: int = CLOCK_LEEWAY
    max_lifetime: int = 3600
    max_size: int = 8192
    # RFC 7523 client assertions need not carry `typ`; when this is set a missing one is accepted,
    # while a present one must still match.
    typ_optional: bool = False
    # A client with one registered key may leave `kid` out of its assertion (docs/architecture.md): when this
    # is set a token without one is checked against the key source's only key (see `KeySource`).
    kid_optional: bool = False
    normalized_typ: str = field(init=False, repr=False, compare=False)
    claims_required: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.issuer or not self.audience:
            raise ValueError("issuer and audience must be non-empty")
        if self.leeway < 0 or self.max_lifetime <= 0 or self.max_size <= 0:
            raise ValueError("leeway must be >= 0, max_lifetime and max_size > 0")
        object.__setattr__(self, "normalized_typ", normalize_typ(self.typ))
        object.__setattr__(self, "claims_required", frozenset(self.required) | ALWAYS_REQUIRED)
