"""The payment policy of `transact` tokens: bound to one movement, counted against the session's threshold."""

from __future__ import annotations

from issuer._http._body import optional_param
from issuer._oauth._authorization_details import AuthorizationDetail, parse_authorization_details
from issuer._oauth._errors import InteractionRequired, InvalidRequest
from issuer._oauth._refresh import RefreshFamily
from issuer._state import IssuerState

TRANSACT = "transact"


def requested_detail(form: dict[str, str], requested: frozenset[str]) -> AuthorizationDetail | None:
    """The movement a token request binds its `transact` token to; None when it asks for no transact token.

    `scope=transact` without `authorization_details` is invalid_request, as are details without
    `transact`: a token that could move money must say which money.
    """
    text = optional_param(form, "authorization_details")
    if TRANSACT not in requested:
        if text is not None:
            raise InvalidRequest(
                "authorization_details is only accepted with scope=transact",
                reason="details_without_transact",
            )
        return None
    if text is None:
        raise InvalidRequest(
            "a transact token needs authorization_details (RFC 9396)", reason="transact_without_details"
        )
    if requested != {TRANSACT}:
        raise InvalidRequest("a transact token carries scope transact alone", reason="transact_with_others")
    return parse_authorization_details(text)


def ledger_expiry(state: IssuerState, family: RefreshFamily) -> float:
    """How long a session's total must be kept: as long as its refresh family can live."""
    return family.created_at + state.settings.refresh_absolute_lifetime + state.settings.refresh_idle_lifetime


async def reserve(state: IssuerState, family: RefreshFamily, detail: AuthorizationDetail) -> None:
    """Count the movement toward the session's total; InteractionRequired when over the threshold."""
    within = await state.spending.reserve(
        family.sid,
        detail.cents,
        limit=state.settings.approval_threshold_cents,
        expires_at=ledger_expiry(state, family),
    )
    if not within:
        raise InteractionRequired(
            "this movement takes the session above the approval threshold: "
            "the user must approve it on their own device (POST /bc-authorize)",
            reason="above_threshold",
        )
