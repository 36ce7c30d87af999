"""base64url without padding (RFC 7515 §2): encoding here, strict decoding shared with the verifier."""

from __future__ import annotations

import binascii

from keys._jose._compact import b64url_decode

__all__ = ["b64url_bytes", "b64url_decode", "b64url_encode"]

_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url_encode(data: bytes) -> str:
    return b64url_bytes(data).decode("ascii")


def b64url_bytes(data: bytes) -> bytes:
    """The encoding as ASCII bytes: a signer joins segments as bytes and decodes the token once."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=")
