"""Reading a JWS header without verifying it: for display and logs of key ids only, never for trust."""

from __future__ import annotations

from typing import Any

from keys._errors import MalformedToken
from keys._jose._compact import b64url_decode, json_object


def unverified_header(token: str) -> dict[str, Any]:
    """The protected header of a compact JWS, unverified; MalformedToken when it is not one."""
    header, dot, _rest = token.partition(".")
    if not dot or len(header) > 2048:
        raise MalformedToken("not a compact JWS")
    return json_object(b64url_decode(header), strict=True)
