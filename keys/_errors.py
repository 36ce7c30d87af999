"""Typed token errors with stable codes.

    TokenError                  root: "reject this token"
    ├── MalformedToken          malformed
    ├── TokenTooLarge           too_large
    ├── ForbiddenHeader         forbidden_header
    ├── UnsupportedAlgorithm    unsupported_alg
    ├── WrongTokenType          wrong_typ
    ├── UnknownKey              unknown_kid
    ├── BadSignature            bad_signature
    ├── MissingClaim            missing_claim
    ├── InvalidClaim            invalid_claim
    ├── WrongIssuer             wrong_iss
    ├── WrongAudience           wrong_aud
    ├── Expired                 expired
    ├── NotYetValid             not_yet_valid
    └── LifetimeTooLong         lifetime_too_long

    KeysUnavailable             jwks_unavailable   an outage, not a bad token: no usable keys to check with

Messages describe the rule that failed, never the token itself.
"""

from __future__ import annotations


class TokenError(Exception):
    """A token was rejected; `code` is stable, the message is for logs only."""

    code = "invalid_token"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.code)


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


class KeysUnavailable(Exception):
    """No usable keys (never fetched, or stale past the limit): answer "try again", never "bad token"."""

    code = "jwks_unavailable"


class KeyMaterialError(Exception):
    """A key could not be generated, loaded or imported; never carries key bytes."""

    code = "invalid_key"
