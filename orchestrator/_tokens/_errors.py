"""Typed failures of the issuer client and token manager, as `BankError`s the agent can speak.

Error tree (the roots come from `orchestrator._bank._protocol`)::

    BankError
    ├── InteractionRequired "interaction_required": above the approval threshold: ask the user's device
    ├── ApprovalPending     "authorization_pending": the user has not decided yet (CIBA poll)
    └── SlowDown            "slow_down": polled too fast; poll 5 s more slowly from now on
    AuthorizationLost
    ├── GrantRevoked        "grant_revoked": invalid_grant: the refresh family is revoked or expired
    ├── IssuerRefused       "issuer_refused": any other 4xx (invalid_client, invalid_request...)
    └── SessionEnded        "session_ended": the call ended and its tokens were revoked
    ToolRefused
    ├── ScopeNotGranted     "scope_not_granted": invalid_scope: the user did not allow this kind of call
    └── DetailsRefused      "details_refused": invalid_authorization_details: the movement is malformed
    ServiceUnavailable
    └── IssuerUnavailable   "issuer_unavailable": 5xx or network errors after the retries
"""

from __future__ import annotations

from orchestrator._bank._protocol import AuthorizationLost, BankError, ServiceUnavailable, ToolRefused

__all__ = [
    "ApprovalPending",
    "DetailsRefused",
    "GrantRevoked",
    "InteractionRequired",
    "IssuerRefused",
    "IssuerUnavailable",
    "ScopeNotGranted",
    "SessionEnded",
    "SlowDown",
]

_LOST = "I no longer have permission to access your accounts during this call."


class GrantRevoked(AuthorizationLost):
    """The issuer answered `invalid_grant`: the session's refresh family is gone."""

    code = "grant_revoked"

    def __init__(self, message: str = _LOST) -> None:
        super().__init__(message)


class IssuerRefused(AuthorizationLost):
    """The issuer refused this client or request outright; retrying will not help."""

    code = "issuer_refused"

    def __init__(self, error: str, message: str = _LOST) -> None:
        super().__init__(message)
        self.error = error  # the RFC 6749 error code, for logs and metrics


class SessionEnded(AuthorizationLost):
    """The call has ended and the session's tokens were revoked."""

    code = "session_ended"

    def __init__(self, message: str = "This call has ended, so I can no longer reach your accounts.") -> None:
        super().__init__(message)


class ScopeNotGranted(ToolRefused):
    """The issuer answered `invalid_scope`: this session may not do that kind of call."""

    code = "scope_not_granted"

    def __init__(self, scope: str) -> None:
        super().__init__(_SCOPE_SENTENCES.get(scope, "You have not allowed that for this call."))
        self.scope = scope


class DetailsRefused(ToolRefused):
    """The issuer refused the movement's authorization details as malformed; nothing was authorized."""

    code = "details_refused"

    def __init__(self, message: str = "I could not prepare that payment, so no money moved.") -> None:
        super().__init__(message)


class InteractionRequired(BankError):
    """The issuer wants the user to approve this movement on their own device (CIBA) before it is made."""

    code = "interaction_required"

    def __init__(self, message: str = "This needs your approval in your banking app.") -> None:
        super().__init__(message)


class ApprovalPending(BankError):
    """A CIBA poll: the user has not decided yet."""

    code = "authorization_pending"

    def __init__(self, message: str = "The approval is still pending.") -> None:
        super().__init__(message)


class SlowDown(BankError):
    """A CIBA poll came faster than the issuer's interval: poll 5 s more slowly from now on."""

    code = "slow_down"

    def __init__(self, message: str = "The approval is still pending.") -> None:
        super().__init__(message)


class IssuerUnavailable(ServiceUnavailable):
    """The issuer could not be reached or kept failing; a later call may succeed."""

    code = "issuer_unavailable"

    def __init__(
        self, message: str = "I can't reach the bank's sign-in service right now. Please try again shortly."
    ) -> None:
        super().__init__(message)


_SCOPE_SENTENCES = {
    "read": "You have not allowed me to look at your accounts during this call.",
    "transact": "You have not allowed me to make payments or transfers during this call.",
    "configure": "You have not allowed me to change your settings during this call.",
}
