"""Fast, strict decoding of compact JWS segments: canonical base64url and bounded, unambiguous JSON."""

from __future__ import annotations

import binascii
import json
from typing import Any

from keys._errors import MalformedToken

MAX_DEPTH = 16
# '-' and '_' become the standard alphabet; '+', '/' and '=' become a byte strict mode refuses.
_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/!!!")
_PADDING = (b"", b"", b"==", b"=")
_WHITESPACE = " \t\n\r"
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# For a segment of length 2 or 3 mod 4, the last character carries unused low bits that must be zero,
# otherwise two different strings decode to the same bytes (a malleable token).
_UNUSED_BITS = {c: i for i, c in enumerate(_ALPHABET)}
_UNUSED_MASK = (0, 0, 0x0F, 0x03)


def b64url_decode(segment: str) -> bytes:
    """Decode an unpadded base64url segment; padding, other alphabets, non-canonical forms are malformed."""
    rest = len(segment) & 3
    try:
        if rest and _UNUSED_BITS[segment[-1]] & _UNUSED_MASK[rest]:
            raise MalformedToken("segment is not canonical base64url")
        return binascii.a2b_base64(
            segment.encode("ascii").translate(_TO_STANDARD) + _PADDING[rest], strict_mode=True
        )
    except (KeyError, UnicodeEncodeError, binascii.Error):
        raise MalformedToken("segment is not base64url") from None


def _refuse_constant(name: str) -> Any:
    raise MalformedToken(f"JSON constant {name} is not allowed")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # Parsers disagree on which duplicate wins, so a duplicate member is refused outright.
        raise MalformedToken("duplicate member in JSON object")
    return obj


_STRICT = json.JSONDecoder(object_pairs_hook=_unique_pairs, parse_constant=_refuse_constant)
_FAST = json.JSONDecoder(parse_constant=_refuse_constant)


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, computed without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item)
    return deepest


def json_object(data: bytes, *, strict: bool) -> dict[str, Any]:
    """A UTF-8 JSON object nested at most MAX_DEPTH deep; `strict` also refuses duplicate members."""
    try:
        text = data.decode("utf-8")
        # raw_decode skips the wrapper of decode(); JSON whitespace around the value stays allowed.
        start = len(text) - len(text.lstrip(_WHITESPACE)) if text[:1] in _WHITESPACE else 0
        value, end = (_STRICT if strict else _FAST).raw_decode(text, start)
        if end != len(text) and text[end:].strip(_WHITESPACE):
            raise MalformedToken("segment has data after its JSON value")
    except (UnicodeDecodeError, ValueError, RecursionError):
        # ValueError covers JSONDecodeError and integers beyond Python's digit limit.
        raise MalformedToken("segment is not a JSON object") from None
    if not isinstance(value, dict):
        raise MalformedToken("segment is not a JSON object")
    # Counting brackets bounds the depth from above, so the exact walk runs only for unusual input.
    if text.count("{") + text.count("[") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise MalformedToken("JSON nested too deeply")
    return value
