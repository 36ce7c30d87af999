"""The authenticated caller, built from verified access-token claims."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp_server._auth._binding import Movement
from mcp_server._errors import McpServerError

# Key under which the auth middleware leaves the principal in the ASGI scope.
SCOPE_KEY = "voicebank.principal"
# Set in the ASGI scope once the request's transact token has been spent.
SPENT_KEY = "voicebank.jti_spent"


class InvalidPrincipal(McpServerError):
    """Verified claims that still do not describe a caller (wrong types)."""

    code = "invalid_claim"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, for whom, and with which scopes."""

    sub: str
    client_id: str
    scopes: frozenset[str]
    jti: str
    exp: float
    sid: str | None = None
    act: str | None = None
    movement: Movement | None = None
    """The one movement a `transact` token authorizes (its `authorization_details`), if any."""

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Principal:
        """The principal of verified claims; raises InvalidPrincipal on a wrongly typed claim."""
        get = claims.get
        sub, client_id, scope, jti, exp = get("sub"), get("client_id"), get("scope"), get("jti"), get("exp")
        if not (isinstance(sub, str) and sub and isinstance(client_id, str) and client_id):
            raise InvalidPrincipal("sub, client_id, jti and scope must be strings")
        if not (isinstance(jti, str) and jti and isinstance(scope, str)):
            raise InvalidPrincipal("sub, client_id, jti and scope must be strings")
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise InvalidPrincipal("exp must be a number")
        sid = get("sid")
        act = get("act")
        actor = act.get("sub") if isinstance(act, Mapping) else None
        return cls(
            sub=sub,
            client_id=client_id,
            scopes=frozenset(scope.split()),
            jti=jti,
            exp=float(exp),
            sid=sid if isinstance(sid, str) else None,
            act=actor if isinstance(actor, str) else None,
            movement=Movement.from_claim(get("authorization_details")),
        )
