"""`POST /sessions`: the app backend opens a voice session and gets a session grant (flow step 1)."""

from __future__ import annotations

import re
import secrets
from typing import Any

from issuer._audit import Decision
from issuer._endpoints._livekit import participant_token
from issuer._oauth._errors import InvalidRequest, InvalidScope
from issuer._oauth._scope import RESOURCE_SCOPES, format_scope, parse_scope
from issuer._state import IssuerState

USER_ID = re.compile(r"[A-Za-z0-9._@+-]{1,128}")
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # a LiveKit room name


def _string(body: dict[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    value = body.get(name)
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise InvalidRequest(f"{name} must be a string matching {pattern.pattern}")
    return value


async def create_session(state: IssuerState, body: dict[str, Any], decision: Decision) -> dict[str, Any]:
    """A session id, its grant and (when LiveKit is configured) the user's participant token."""
    unknown = body.keys() - {"user_id", "scope", "room"}
    if unknown:
        raise InvalidRequest(f"unknown members: {', '.join(sorted(unknown))[:200]}")
    user_id = _string(body, "user_id", USER_ID)
    decision.sub = user_id
    room = _string(body, "room", SESSION_ID) if body.get("room") is not None else None
    scope_value = body.get("scope", "read")
    if not isinstance(scope_value, str):
        raise InvalidRequest("scope must be a space-delimited string")
    scopes = parse_scope(scope_value)
    if not scopes <= RESOURCE_SCOPES:
        raise InvalidScope(f"a session may only carry {format_scope(set(RESOURCE_SCOPES))}")
    settings = state.settings
    sid = room or f"vb-{secrets.token_urlsafe(12)}"
    decision.sid, decision.scope = sid, format_scope(scopes)
    grant = await state.minter.session_grant(
        sub=user_id,
        sid=sid,
        scope=format_scope(scopes),
        actor=settings.orchestrator_client_id,
        now=state.clock(),
        lifetime=settings.session_grant_lifetime,
    )
    decision.issued(grant)
    livekit: dict[str, str] | None = None
    if settings.livekit_url and settings.livekit_api_key and settings.livekit_api_secret:
        livekit = {
            "url": settings.livekit_url,
            "room": sid,
            "participant_token": participant_token(
                api_key=settings.livekit_api_key,
                api_secret=settings.livekit_api_secret.get_secret_value(),
                room=sid,
                user_id=user_id,
                session_grant=grant.token,
                agent_name=settings.livekit_agent_name,
                ttl=settings.session_grant_lifetime,
            ),
        }
    return {
        "session_id": sid,
        "session_grant": grant.token,
        "expires_in": grant.expires_in,
        "livekit": livekit,
    }
