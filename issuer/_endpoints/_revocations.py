"""`POST /admin/revocations`: an operator ends every refresh family of a session, a user or a client."""

from __future__ import annotations

import logging
from typing import Any

from issuer._audit import Decision
from issuer._oauth._errors import InvalidRequest
from issuer._state import IssuerState

REVOKE_SCOPE = "sessions:revoke"
_TARGETS = ("sid", "sub", "client_id")
_MAX_ID = 200
log = logging.getLogger("issuer.admin")


def _target(body: dict[str, Any]) -> tuple[str, str]:
    unknown = body.keys() - set(_TARGETS)
    if unknown:
        raise InvalidRequest(f"unknown members: {', '.join(sorted(unknown))[:200]}")
    given = [(name, body[name]) for name in _TARGETS if name in body]
    if len(given) != 1:
        raise InvalidRequest("give exactly one of sid, sub and client_id")
    name, value = given[0]
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_ID or not value.isprintable():
        raise InvalidRequest(f"{name} must be a non-empty printable string of at most {_MAX_ID} characters")
    return name, value


async def revoke_families(state: IssuerState, body: dict[str, Any], decision: Decision) -> dict[str, int]:
    """Revoke the families at once (the store is shared by every replica); how many were live."""
    name, value = _target(body)
    if name == "sid":
        decision.sid = value
    elif name == "sub":
        decision.sub = value
    count = await state.refresh.revoke_all(now=state.clock(), **{name: value})
    # The audit line's client_id is the operator's client, so a revoked client is named in the reason.
    target = f"client_id={value} " if name == "client_id" else ""
    decision.reason = f"{target}revoked_families={count}"
    log.warning("operator %s revoked %d refresh families (%s)", decision.client_id, count, name)
    return {"revoked_families": count}
