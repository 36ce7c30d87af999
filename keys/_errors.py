"""Every error `keys` raises, under one root, each with a stable code.

    KeysError                   keys_error          root
    ├── TokenError              invalid_token       "reject this token"
    │   ├── MalformedToken      malformed
    │   ├── TokenTooLarge       too_large
    │   ├── ForbiddenHeader     forbidden_header
    │   ├── UnsupportedAlgorithm unsupported_alg
    │   ├── WrongTokenType      wrong_typ
    │   ├── UnknownKey          unknown_kid
    │   ├── BadSignature        bad_signature
    │   ├── MissingClaim        missing_claim
    │   ├── InvalidClaim        invalid_claim
    │   ├── WrongIssuer         wrong_iss
    │   ├── WrongAudience       wrong_aud
    │   ├── Expired             expired
    │   ├── NotYetValid         not_yet_valid
    │   ├── LifetimeTooLong     lifetime_too_long
    │   ├── WrongMethod         wrong_htm           a DPoP proof names another HTTP method
    │   ├── WrongUri            wrong_htu           a DPoP proof names another URI (or one with a query)
    │   ├── WrongTokenHash      wrong_ath           a DPoP proof's `ath` is not the presented token's hash
    │   ├── WrongProofKey       wrong_jkt           a DPoP proof is signed by another key than the bound one
    │   ├── ProofReplayed       proof_replayed      a DPoP proof's `jti` was seen before
    │   └── UseDPoPNonce        use_dpop_nonce      a DPoP proof lacks the receiver's current nonce
    ├── KeysUnavailable         jwks_unavailable    no usable issuer keys now: an outage, not a bad token
    ├── ReplayUnavailable       replay_store_unavailable  a replay cache cannot tell: refuse (fail closed)
    ├── KeyMaterialError        invalid_key
    └── KeyRingError            keyring_error       (the key ring and its stores: `keys/_ring/_errors.py`)

Messages describe the rule that failed, never the token or key material itself.
"""

from __future__ import annotations


class KeysError(Exception):
    """Root of every error raised by `keys`; `code` is stable, the message is for logs only."""

    code = "keys_error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.code)


class TokenError(KeysError):
    """A token was rejected; `code` is stable, the message is for logs only."""

    code = "invalid_token"


class MalformedToken(TokenError):
    code = "malformed"


class TokenTooLarge(TokenError):
    code = "too_large"


class ForbiddenHeader(TokenError):
    code = "forbidden_header"


class UnsupportedAlgorithm(TokenError):
    code = "unsupported_alg"


class WrongTokenType(TokenError):
    code = "wrong_typ"


class UnknownKey(TokenError):
    code = "unknown_kid"


class BadSignature(TokenError):
    code = "bad_signature"


class MissingClaim(TokenError):
    code = "missing_claim"


class InvalidClaim(TokenError):
    code = "invalid_claim"


class WrongIssuer(TokenError):
    code = "wrong_iss"


class WrongAudience(TokenError):
    code = "wrong_aud"


class Expired(TokenError):
    code = "expired"


class NotYetValid(TokenError):
    code = "not_yet_valid"


class LifetimeTooLong(TokenError):
    code = "lifetime_too_long"


class WrongMethod(TokenError):
    code = "wrong_htm"


class WrongUri(TokenError):
    code = "wrong_htu"


class WrongTokenHash(TokenError):
    code = "wrong_ath"


class WrongProofKey(TokenError):
    code = "wrong_jkt"


class ProofReplayed(TokenError):
    code = "proof_replayed"


class UseDPoPNonce(TokenError):
    """The receiver demands a nonce (RFC 9449 §8, §9): answer `use_dpop_nonce` with a fresh `DPoP-Nonce`."""

    code = "use_dpop_nonce"


class KeysUnavailable(KeysError):
    """The key source cannot answer now (the issuer's JWKS is not fetched yet, or stale past its limit)."""

    code = "jwks_unavailable"


class ReplayUnavailable(KeysError):
    """A replay cache cannot tell whether an identifier was used (Redis down, memory full): refuse it."""

    code = "replay_store_unavailable"


class KeyMaterialError(KeysError):
    """A key could not be generated, loaded or imported; never carries key bytes."""

    code = "invalid_key"
