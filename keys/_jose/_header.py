"""Reading a JWS without verifying it: for logs and for choosing whose key to check, never for trust."""

from __future__ import annotations

from typing import Any

from keys._errors import MalformedToken, TokenTooLarge
from keys._jose._compact import b64url_decode, json_object

# As large as any token a verifier accepts by default (VerifyPolicy.max_size): the cap comes before any work.
MAX_UNVERIFIED_SIZE = 8192


def unverified_header(token: str) -> dict[str, Any]:
    """The protected header of a compact JWS, unverified; MalformedToken when it is not one."""
    header, dot, _rest = token.partition(".")
    if not dot or len(header) > 2048:
        raise MalformedToken("not a compact JWS")
    return json_object(b64url_decode(header), strict=True)


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, unverified: it may name whose key to check the token with, nothing more.

    Duplicate members are refused, so the name read here is the one a verified read of the payload sees.
    """
    if len(token) > MAX_UNVERIFIED_SIZE:
        raise TokenTooLarge("token exceeds the size limit")
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedToken("not a compact JWS")
    return json_object(b64url_decode(parts[1]), strict=True)
