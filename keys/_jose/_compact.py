"""Fast, strict decoding of compact JWS segments: canonical base64url and bounded, unambiguous JSON."""

from __future__ import annotations

import binascii
import json
from typing import Any

import orjson

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
    """A UTF-8 JSON object nested at most MAX_DEPTH deep; `strict` also refuses duplicate members.

    Without `strict` (a verified payload: the signer's own words) orjson reads it, several times faster;
    whatever orjson refuses (huge numbers, lone surrogates, bad JSON) is read by `json` as in strict mode,
    so both accept the same documents. They differ only on an integer beyond 64 bits, which orjson reads
    as a float: no claim rule accepts either form.
    """
    if strict:
        value = _json_decode(data, _STRICT)
    else:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            value = _json_decode(data, _FAST)
    if not isinstance(value, dict):
        raise MalformedToken("segment is not a JSON object")
    # Counting brackets bounds the depth from above, so the exact walk runs only for unusual input.
    if data.count(b"{") + data.count(b"[") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise MalformedToken("JSON nested too deeply")
    return value


def _json_decode(data: bytes, decoder: json.JSONDecoder) -> Any:
    try:
        text = data.decode("utf-8")
        # raw_decode skips the wrapper of decode(); JSON whitespace around the value stays allowed.
        start = len(text) - len(text.lstrip(_WHITESPACE)) if text[:1] in _WHITESPACE else 0
        value, end = decoder.raw_decode(text, start)
        if end != len(text) and text[end:].strip(_WHITESPACE):
            raise MalformedToken("segment has data after its JSON value")
    except (UnicodeDecodeError, ValueError, RecursionError):
        # ValueError covers JSONDecodeError and integers beyond Python's digit limit.
        raise MalformedToken("segment is not a JSON object") from None
    return value
