"""The caller's identity, read from the LiveKit participant metadata written by the issuer's `/sessions`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from orchestrator._errors import OrchestratorError

__all__ = ["CallerIdentity", "IdentityRefused", "parse_identity"]

MAX_METADATA_BYTES = 16 * 1024
MAX_GRANT_CHARS = 8192  # the verifier's own size cap
MAX_ID_CHARS = 256

_GRANT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f]+")


class IdentityRefused(OrchestratorError):
    """The metadata names no caller; each instance's `code` says why, and the message never holds a grant."""

    code = "identity_refused"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class CallerIdentity:
    """Who is on the call: the user, the voice session (room) id and the grant to exchange for tokens."""

    user_id: str
    session_id: str
    session_grant: str = field(repr=False)


def _text_field(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if value is None:
        raise IdentityRefused("missing_field", f"participant metadata has no {name}")
    if not isinstance(value, str):
        raise IdentityRefused("invalid_field", f"{name} must be a string")
    if not value:
        raise IdentityRefused("invalid_field", f"{name} is empty")
    return value


def _id_field(obj: dict[str, Any], name: str) -> str:
    value = _text_field(obj, name)
    if len(value) > MAX_ID_CHARS or value != value.strip() or _PRINTABLE.fullmatch(value) is None:
        raise IdentityRefused("invalid_field", f"{name} is not a valid identifier")
    return value


def parse_identity(metadata: str | None, *, room_name: str | None = None) -> CallerIdentity:
    """Parse `{"user_id", "session_id", "session_grant"}`; raise `IdentityRefused` on anything else.

    With `room_name`, the session id must be that room's name (docs/architecture.md: `sid` is the room name).
    """
    if not metadata:
        raise IdentityRefused("missing", "participant has no metadata")
    if len(metadata.encode("utf-8", "surrogatepass")) > MAX_METADATA_BYTES:
        raise IdentityRefused("too_large", "participant metadata is too large")
    try:
        obj = json.loads(metadata)
    except ValueError:
        raise IdentityRefused("not_json", "participant metadata is not JSON") from None
    if not isinstance(obj, dict):
        raise IdentityRefused("not_object", "participant metadata is not a JSON object")
    user_id = _id_field(obj, "user_id")
    session_id = _id_field(obj, "session_id")
    grant = _text_field(obj, "session_grant")
    if len(grant) > MAX_GRANT_CHARS:
        raise IdentityRefused("too_large", "session grant is too large")
    if _GRANT.fullmatch(grant) is None:
        raise IdentityRefused("invalid_grant", "session grant is not a compact JWS")
    if room_name is not None and session_id != room_name:
        raise IdentityRefused("session_mismatch", "session id does not name this room")
    return CallerIdentity(user_id=user_id, session_id=session_id, session_grant=grant)
