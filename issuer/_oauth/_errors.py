"""The issuer's errors under one root; OAuth errors carry their RFC error code and HTTP status.

    IssuerError                 issuer_error
    ├── IssuerStartupError      startup                    (`_build.py`: one line, before serving)
    ├── ClientRegistryError     invalid_client_registry    (`_oauth/_clients.py`)
    └── OAuthError              oauth_error                a client's error, rendered in one place
        │                                                  (`_http/_handlers.oauth_error_response`)
        ├── InvalidRequest      invalid_request            400 (413 for a body over the size cap)
        ├── InvalidClient       invalid_client             401 + WWW-Authenticate
        ├── InvalidGrant        invalid_grant              400
        ├── UnauthorizedClient  unauthorized_client        400
        ├── UnsupportedGrantType unsupported_grant_type    400
        ├── InvalidScope        invalid_scope              400
        ├── InvalidTarget       invalid_target             400 (RFC 8693)
        ├── UnsupportedTokenType unsupported_token_type    400 (RFC 7009 / 8693)
        ├── InvalidAuthorizationDetails invalid_authorization_details 400 (RFC 9396)
        ├── InteractionRequired interaction_required       400 (a movement above the approval threshold)
        ├── AuthorizationPending authorization_pending     400 (CIBA §11: not decided yet)
        ├── SlowDown            slow_down                  400 (CIBA §11: polled faster than the interval)
        ├── AccessDenied        access_denied              400 (CIBA: the user declined, or the app is full)
        ├── ExpiredToken        expired_token              400 (CIBA §11: the request expired)
        ├── UnknownUserId       unknown_user_id            400 (CIBA §13: login_hint names no live session)
        ├── InvalidBindingMessage invalid_binding_message  400 (CIBA §13)
        ├── InvalidToken        invalid_token              401 (RFC 6750 bearer)
        ├── InsufficientScope   insufficient_scope         403 (RFC 6750 bearer)
        ├── InvalidDPoPProof    invalid_dpop_proof         400 (RFC 9449 §5)
        ├── UseDPoPNonce        use_dpop_nonce             400 + DPoP-Nonce (RFC 9449 §8)
        ├── NotFound            not_found                  404
        ├── Conflict            conflict (or the key ring's code) 409
        └── TemporarilyUnavailable temporarily_unavailable 503

A wrong content type is a 400 invalid_request (RFC 6749 §5.2: "otherwise malformed"), on every endpoint.
Descriptions are safe to show a client: they never contain a token or key material.
"""

from __future__ import annotations


class IssuerError(Exception):
    """Root of every error the issuer raises; `code` is stable."""

    code = "issuer_error"


class OAuthError(IssuerError):
    """An error answered to the client as `{"error": code, "error_description": description}`."""

    code = "oauth_error"
    status = 400

    def __init__(
        self,
        description: str,
        *,
        reason: str | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(description)
        self.description = description
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        # The precise internal cause for logs and metrics, never sent to the client.
        self.reason = reason or self.code


class InvalidRequest(OAuthError):
    code = "invalid_request"


class InvalidClient(OAuthError):
    code = "invalid_client"
    status = 401


class InvalidGrant(OAuthError):
    code = "invalid_grant"


class UnauthorizedClient(OAuthError):
    code = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    code = "unsupported_grant_type"


class InvalidScope(OAuthError):
    code = "invalid_scope"


class InvalidTarget(OAuthError):
    code = "invalid_target"


class UnsupportedTokenType(OAuthError):
    code = "unsupported_token_type"


class InvalidAuthorizationDetails(OAuthError):
    code = "invalid_authorization_details"


class InteractionRequired(OAuthError):
    code = "interaction_required"


class AuthorizationPending(OAuthError):
    code = "authorization_pending"


class SlowDown(OAuthError):
    code = "slow_down"


class AccessDenied(OAuthError):
    code = "access_denied"


class ExpiredToken(OAuthError):
    code = "expired_token"


class UnknownUserId(OAuthError):
    code = "unknown_user_id"


class InvalidBindingMessage(OAuthError):
    code = "invalid_binding_message"


class InvalidToken(OAuthError):
    code = "invalid_token"
    status = 401


class InsufficientScope(OAuthError):
    code = "insufficient_scope"
    status = 403

    def __init__(self, description: str, *, scope: str, reason: str | None = None) -> None:
        super().__init__(description, reason=reason)
        self.scope = scope


class InvalidDPoPProof(OAuthError):
    code = "invalid_dpop_proof"


class UseDPoPNonce(OAuthError):
    """The request needs a proof with the issuer's current nonce, which the answer carries."""

    code = "use_dpop_nonce"

    def __init__(self, description: str, *, nonce: str, reason: str | None = None) -> None:
        super().__init__(description, reason=reason)
        self.nonce = nonce


class NotFound(OAuthError):
    code = "not_found"
    status = 404


class Conflict(OAuthError):
    code = "conflict"
    status = 409


class TemporarilyUnavailable(OAuthError):
    code = "temporarily_unavailable"
    status = 503
