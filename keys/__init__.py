"""All key and JOSE code of voicebank: keys, key ring and stores, JWKS, signing and the strict verifier."""

from keys._errors import (
    BadSignature,
    Expired,
    ForbiddenHeader,
    InvalidClaim,
    KeyMaterialError,
    KeysUnavailable,
    LifetimeTooLong,
    MalformedToken,
    MissingClaim,
    NotYetValid,
    TokenError,
    TokenTooLarge,
    UnknownKey,
    UnsupportedAlgorithm,
    WrongAudience,
    WrongIssuer,
    WrongTokenType,
)
from keys._keypair import ALGORITHMS, Algorithm, KeyPair, generate_key, thumbprint
from keys._sign import sign
from keys._verify_key import VerifyKey

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "BadSignature",
    "Expired",
    "ForbiddenHeader",
    "InvalidClaim",
    "KeyMaterialError",
    "KeyPair",
    "KeysUnavailable",
    "LifetimeTooLong",
    "MalformedToken",
    "MissingClaim",
    "NotYetValid",
    "TokenError",
    "TokenTooLarge",
    "UnknownKey",
    "UnsupportedAlgorithm",
    "VerifyKey",
    "WrongAudience",
    "WrongIssuer",
    "WrongTokenType",
    "generate_key",
    "sign",
    "thumbprint",
]
