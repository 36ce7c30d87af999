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
from keys._file_store import FileKeyStore
from keys._inspect import unverified_header
from keys._jwks_cache import JWKSCache
from keys._key_events import KEY_EVENTS_CHANNEL, key_events
from keys._keypair import ALGORITHMS, Algorithm, KeyPair, generate_key, thumbprint
from keys._policy import VerifyPolicy
from keys._policy_rotation import RotationPolicy
from keys._redis_store import RedisKeyStore
from keys._ring import KeyRecord, KeyRing, KeyState
from keys._ring_errors import (
    CorruptKeyRing,
    KeyRingError,
    KeyStoreError,
    KeyStoreUnavailable,
    NoSigningKey,
    RevocationRefused,
    RotationRefused,
    StoreConflict,
    UnknownKeyId,
    WrongPassphrase,
)
from keys._sign import sign
from keys._static_keys import StaticKeys
from keys._store import KeyStore
from keys._verifier import KeySource, Verifier
from keys._verify_key import VerifyKey

__all__ = [
    "ALGORITHMS",
    "KEY_EVENTS_CHANNEL",
    "Algorithm",
    "BadSignature",
    "CorruptKeyRing",
    "Expired",
    "FileKeyStore",
    "ForbiddenHeader",
    "InvalidClaim",
    "JWKSCache",
    "KeyMaterialError",
    "KeyPair",
    "KeyRecord",
    "KeyRing",
    "KeyRingError",
    "KeySource",
    "KeyState",
    "KeyStore",
    "KeyStoreError",
    "KeyStoreUnavailable",
    "KeysUnavailable",
    "LifetimeTooLong",
    "MalformedToken",
    "MissingClaim",
    "NoSigningKey",
    "NotYetValid",
    "RedisKeyStore",
    "RevocationRefused",
    "RotationPolicy",
    "RotationRefused",
    "StaticKeys",
    "StoreConflict",
    "TokenError",
    "TokenTooLarge",
    "UnknownKey",
    "UnknownKeyId",
    "UnsupportedAlgorithm",
    "Verifier",
    "VerifyKey",
    "VerifyPolicy",
    "WrongAudience",
    "WrongIssuer",
    "WrongPassphrase",
    "WrongTokenType",
    "generate_key",
    "key_events",
    "sign",
    "thumbprint",
    "unverified_header",
]
