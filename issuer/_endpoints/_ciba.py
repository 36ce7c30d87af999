"""Out-of-band approval of a payment (OpenID CIBA, poll mode): `/bc-authorize`, `/approvals`, the CIBA grant.

The orchestrator asks (`bc_authorize`), the user's app backend lists and decides (`list_approvals`,
`decide_approval`), and the orchestrator polls `/token` until the single-use token for exactly the approved
movement comes back (`ciba_token`). A request belongs to one live session: its refresh family must be live
when it is made, when it is approved and when its token is handed out. Each step fills the request's audit
`Decision`, which the HTTP layer writes once (refusals included).
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Sequence
from typing import Any

from issuer._audit import Decision
from issuer._endpoints._sessions import SESSION_ID, USER_ID
from issuer._endpoints._transact import TRANSACT, ledger_expiry
from issuer._http._body import optional_param, required_param
from issuer._oauth._approvals import APPROVAL_LIFETIME, POLL_INTERVAL, ApprovalRequest
from issuer._oauth._authorization_details import parse_authorization_details
from issuer._oauth._clients import GRANT_CIBA, Client
from issuer._oauth._dpop import require_key
from issuer._oauth._errors import (
    AccessDenied,
    AuthorizationPending,
    Conflict,
    ExpiredToken,
    InvalidBindingMessage,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    NotFound,
    OAuthError,
    SlowDown,
    UnauthorizedClient,
    UnknownUserId,
)
from issuer._oauth._refresh import RefreshFamily
from issuer._oauth._scope import parse_scope
from issuer._signing._mint import Minted
from issuer._state import IssuerState
from keys import DPoPProof

APPROVALS_SCOPE = "approvals:decide"
BC_AUTHORIZE_PATH = "/bc-authorize"
MAX_BINDING_MESSAGE = 80
_AUTH_REQ_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_UNSUPPORTED_HINTS = ("login_hint_token", "id_token_hint", "user_code")
_DECISIONS = {"approve": True, "deny": False}


def _binding_message(form: dict[str, str]) -> str | None:
    """What the user's app shows: at most 80 characters, no control or format characters (CIBA §7.1)."""
    text = optional_param(form, "binding_message")
    if text is None:
        return None
    if len(text) > MAX_BINDING_MESSAGE:
        raise InvalidBindingMessage(f"binding_message is longer than {MAX_BINDING_MESSAGE} characters")
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in text):
        raise InvalidBindingMessage("binding_message holds control or format characters")
    return text


async def _live_family(state: IssuerState, sid: str, client_id: str) -> RefreshFamily | None:
    return await state.refresh.session_family(sid, client_id, state.clock())


def backchannel_endpoint(state: IssuerState) -> str:
    return state.settings.issuer_url.rstrip("/") + BC_AUTHORIZE_PATH


async def bc_authorize(
    state: IssuerState,
    form: dict[str, str],
    authorization: str | None,
    decision: Decision,
    dpop: Sequence[str] = (),
) -> dict[str, Any]:
    """`POST /bc-authorize`: open an approval request for one movement of a live session."""
    client = await state.clients.authenticate(form, authorization=authorization)
    decision.client_id, decision.scope = client.client_id, TRANSACT
    if not client.may_use(GRANT_CIBA):
        raise UnauthorizedClient("this client is not registered for the CIBA grant")
    proof = await state.dpop.proof(dpop, htu=backchannel_endpoint(state), client=client)
    if any(optional_param(form, hint) for hint in _UNSUPPORTED_HINTS):
        raise InvalidRequest("only login_hint (the session id) identifies the user here")
    if parse_scope(required_param(form, "scope")) != {TRANSACT} or TRANSACT not in client.scopes:
        raise InvalidScope("bc-authorize asks for scope=transact only")
    sid = required_param(form, "login_hint")
    detail = parse_authorization_details(required_param(form, "authorization_details"))
    message = _binding_message(form)
    if SESSION_ID.fullmatch(sid) is None:
        raise UnknownUserId("login_hint must be the id of a live session of this client")
    decision.sid = sid
    family = await _live_family(state, sid, client.client_id)
    if family is None:
        raise UnknownUserId("login_hint must be the id of a live session of this client")
    require_key(proof, family.jkt)  # a DPoP-bound session asks only with its own key
    decision.sub, decision.family = family.sub, family.family_id
    now = state.clock()
    request = ApprovalRequest(
        auth_req_id=secrets.token_urlsafe(32),
        client_id=client.client_id,
        user_id=family.sub,
        sid=sid,
        detail=detail,
        binding_message=message,
        created_at=now,
        expires_at=now + APPROVAL_LIFETIME,
    )
    if not await state.approvals.create(request, now=now):
        # CIBA §13 access_denied: the OP denied the request (here: the user's app is already full).
        raise AccessDenied("too many approvals are pending for this user", reason="too_many_pending")
    return {"auth_req_id": request.auth_req_id, "expires_in": APPROVAL_LIFETIME, "interval": POLL_INTERVAL}


async def list_approvals(state: IssuerState, user_id: str | None, decision: Decision) -> dict[str, Any]:
    """`GET /approvals?user_id=`: the user's pending approvals, for their app to show."""
    if user_id is None or USER_ID.fullmatch(user_id) is None:
        raise InvalidRequest(f"user_id must be a string matching {USER_ID.pattern}", reason="bad_user_id")
    decision.sub = user_id
    pending = await state.approvals.pending(user_id, now=state.clock())
    return {"approvals": [request.view() for request in pending]}


def _approves(body: dict[str, Any]) -> bool:
    unknown = body.keys() - {"decision"}
    if unknown:
        raise InvalidRequest(f"unknown members: {', '.join(sorted(unknown))[:200]}")
    decision = body.get("decision")
    if not isinstance(decision, str) or decision not in _DECISIONS:
        raise InvalidRequest('decision must be "approve" or "deny"')
    return _DECISIONS[decision]


async def decide_approval(
    state: IssuerState, auth_req_id: str, body: dict[str, Any], decision: Decision
) -> dict[str, Any]:
    """`POST /approvals/{auth_req_id}`: the user approved or declined in their app."""
    approve = _approves(body)
    request = await state.approvals.get(auth_req_id) if _AUTH_REQ_ID.fullmatch(auth_req_id) else None
    if request is None:
        raise NotFound("no approval request has this id", reason="unknown_request")
    decision.sub, decision.sid, decision.scope = request.user_id, request.sid, TRANSACT
    if approve and await _live_family(state, request.sid, request.client_id) is None:
        raise Conflict("the call this payment belongs to has ended", code="session_ended")
    outcome = await state.approvals.decide(auth_req_id, approve=approve, now=state.clock())
    if outcome in ("unknown", "expired"):
        raise NotFound("no pending approval request has this id", reason=f"request_{outcome}")
    if outcome == "decided":
        raise Conflict("this approval request was already decided", reason="already_decided")
    status = "approved" if approve else "denied"
    decision.reason = status  # the audit line's note on an ok outcome: what the user decided
    return {"auth_req_id": auth_req_id, "status": status}


def _poll_refusal(outcome: str) -> OAuthError:
    if outcome == "pending":
        return AuthorizationPending("the user has not decided yet")
    if outcome == "slow_down":
        return SlowDown("polled faster than the interval; wait 5 s longer between polls")
    if outcome == "denied":
        return AccessDenied("the user declined this payment")
    if outcome == "expired":
        return ExpiredToken("the approval request expired before the user decided")
    return InvalidGrant("auth_req_id is unknown, spent or not this client's", reason=f"ciba_{outcome}")


async def _require_session_key(
    state: IssuerState, client: Client, auth_req_id: str, proof: DPoPProof | None, decision: Decision
) -> None:
    """A poll for a DPoP-bound session's request proves that session's key, before anything changes.

    It also names the request's user and session in the audit line, so a refused poll
    (pending, slow_down, denied) says whose payment it was.
    """
    request = await state.approvals.get(auth_req_id)
    if request is None or request.client_id != client.client_id:
        return  # the poll itself answers invalid_grant
    decision.sub, decision.sid = request.user_id, request.sid
    family = await _live_family(state, request.sid, client.client_id)
    if family is not None:
        require_key(proof, family.jkt)


async def ciba_token(
    state: IssuerState,
    client: Client,
    form: dict[str, str],
    decision: Decision,
    proof: DPoPProof | None = None,
) -> Minted:
    """The CIBA grant: the single-use `transact` token of an approved request, once."""
    decision.scope = TRANSACT
    auth_req_id = required_param(form, "auth_req_id")
    if _AUTH_REQ_ID.fullmatch(auth_req_id) is None:
        raise InvalidGrant("auth_req_id is unknown", reason="ciba_malformed")
    await _require_session_key(state, client, auth_req_id, proof, decision)
    now = state.clock()
    outcome, request = await state.approvals.poll(auth_req_id, client_id=client.client_id, now=now)
    if outcome != "approved" or request is None:
        raise _poll_refusal(outcome)
    decision.sub, decision.sid = request.user_id, request.sid
    family = await _live_family(state, request.sid, client.client_id)
    if family is None:
        raise InvalidGrant("the call this payment belongs to has ended", reason="ciba_session_ended")
    decision.family = family.family_id
    # An approved movement counts toward the session's total too, whatever the total.
    await state.spending.add(request.sid, request.detail.cents, expires_at=ledger_expiry(state, family))
    minted = await state.minter.access_token(
        sub=request.user_id,
        client_id=client.client_id,
        scope=TRANSACT,
        audience=state.settings.mcp_resource_url,
        now=now,
        lifetime=state.settings.transact_token_lifetime,
        sid=request.sid,
        authorization_details=request.detail.claim(),
        jkt=None if proof is None else proof.jkt,
    )
    decision.issued(minted)
    return minted
