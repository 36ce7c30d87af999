"""All key and JOSE code of voicebank: keys, key ring and stores, JWKS, signing and the strict verifier."""

from keys._algorithms._base import ALGORITHMS, Algorithm
from keys._algorithms._keypair import KeyPair, generate_key, thumbprint
from keys._algorithms._verify_key import VerifyKey
from keys._client._assertion import ASSERTION_TYP, JWT_BEARER, assertion_form, client_assertion
from keys._client._key_file import client_key_path, load_client_key, write_private_file
from keys._dpop._nonce import DPOP_NONCE_MAX_LENGTH, NONCE_WINDOW, MemoryNonces, NonceSource, RedisNonces
from keys._dpop._proof import DPOP_ALGORITHMS, DPOP_TYP, access_token_hash, dpop_proof
from keys._dpop._verifier import MAX_PROOF_SIZE, DPoPProof, DPoPVerifier
from keys._errors import (
    BadSignature,
    Expired,
    ForbiddenHeader,
    InvalidClaim,
    KeyMaterialError,
    KeysError,
    KeysUnavailable,
    LifetimeTooLong,
    MalformedToken,
    MissingClaim,
    NotYetValid,
    ProofReplayed,
    ReplayUnavailable,
    TokenError,
    TokenTooLarge,
    UnknownKey,
    UnsupportedAlgorithm,
    UseDPoPNonce,
    WrongAudience,
    WrongIssuer,
    WrongMethod,
    WrongProofKey,
    WrongTokenHash,
    WrongTokenType,
    WrongUri,
)
from keys._jose._header import unverified_claims, unverified_header
from keys._jose._sign import sign
from keys._log_line import LineWriter, log_line
from keys._redis import exactly_once, idempotent, redis_client
from keys._replay._cache import ReplayCache
from keys._replay._memory import MemoryReplayCache
from keys._replay._observed import ObservedReplayCache
from keys._replay._redis import RedisReplayCache
from keys._ring._errors import (
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
from keys._ring._events import KEY_EVENTS_CHANNEL, KeyEvent, key_events
from keys._ring._file_store import FileKeyStore
from keys._ring._keyring import KeyRecord, KeyRing, KeyState
from keys._ring._redis_store import RedisKeyStore
from keys._ring._rotation_policy import RotationPolicy
from keys._ring._store import KeyStore
from keys._timing import CLOCK_LEEWAY, DEFAULT_JWKS_MAX_AGE
from keys._verify._jwks_cache import JWKSCache
from keys._verify._policy import VerifyPolicy
from keys._verify._static_keys import StaticKeys
from keys._verify._verifier import KeySource, TokenHeader, Verifier

__all__ = [
    "ALGORITHMS",
    "ASSERTION_TYP",
    "CLOCK_LEEWAY",
    "DEFAULT_JWKS_MAX_AGE",
    "DPOP_ALGORITHMS",
    "DPOP_NONCE_MAX_LENGTH",
    "DPOP_TYP",
    "JWT_BEARER",
    "KEY_EVENTS_CHANNEL",
    "MAX_PROOF_SIZE",
    "NONCE_WINDOW",
    "Algorithm",
    "BadSignature",
    "CorruptKeyRing",
    "DPoPProof",
    "DPoPVerifier",
    "Expired",
    "FileKeyStore",
    "ForbiddenHeader",
    "InvalidClaim",
    "JWKSCache",
    "KeyEvent",
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
    "KeysError",
    "KeysUnavailable",
    "LifetimeTooLong",
    "LineWriter",
    "MalformedToken",
    "MemoryNonces",
    "MemoryReplayCache",
    "MissingClaim",
    "NoSigningKey",
    "NonceSource",
    "NotYetValid",
    "ObservedReplayCache",
    "ProofReplayed",
    "RedisKeyStore",
    "RedisNonces",
    "RedisReplayCache",
    "ReplayCache",
    "ReplayUnavailable",
    "RevocationRefused",
    "RotationPolicy",
    "RotationRefused",
    "StaticKeys",
    "StoreConflict",
    "TokenError",
    "TokenHeader",
    "TokenTooLarge",
    "UnknownKey",
    "UnknownKeyId",
    "UnsupportedAlgorithm",
    "UseDPoPNonce",
    "Verifier",
    "VerifyKey",
    "VerifyPolicy",
    "WrongAudience",
    "WrongIssuer",
    "WrongMethod",
    "WrongPassphrase",
    "WrongProofKey",
    "WrongTokenHash",
    "WrongTokenType",
    "WrongUri",
    "access_token_hash",
    "assertion_form",
    "client_assertion",
    "client_key_path",
    "dpop_proof",
    "exactly_once",
    "generate_key",
    "idempotent",
    "key_events",
    "load_client_key",
    "log_line",
    "redis_client",
    "sign",
    "thumbprint",
    "unverified_claims",
    "unverified_header",
    "write_private_file",
]
