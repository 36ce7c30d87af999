"""Strict base64url without padding (RFC 7515 §2): anything else is malformed."""

from __future__ import annotations

import base64
import binascii
import re

from keys._errors import MalformedToken

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")
_TO_STANDARD = str.maketrans("-_", "+/")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    """Decode one segment, refusing padding, other alphabets and impossible lengths."""
    if len(segment) % 4 == 1 or _ALPHABET.fullmatch(segment) is None:
        raise MalformedToken("segment is not base64url")
    try:
        return binascii.a2b_base64(
            segment.translate(_TO_STANDARD) + "=" * (-len(segment) % 4), strict_mode=True
        )
    except binascii.Error as exc:
        raise MalformedToken("segment is not base64url") from exc
