"""Strict request bodies: size cap, content type, form parameters without duplicates, JSON objects."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request

from issuer._oauth._errors import InvalidRequest

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes without reading past the limit."""
    declared = request.headers.get("content-length")
    if declared is not None:
        # ASCII digits only (str.isdigit also takes "²", which int() refuses), and no longer than the
        # limit's own digits before int() runs: int() refuses a number of more than 4,300 digits.
        if not (declared.isascii() and declared.isdigit()):
            raise InvalidRequest("the Content-Length header is malformed")
        digits = declared.lstrip("0") or "0"
        if len(digits) > len(str(limit)) or int(digits) > limit:
            raise InvalidRequest(f"the request body is larger than {limit} bytes", status=413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InvalidRequest(f"the request body is larger than {limit} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request, limit: int) -> dict[str, str]:
    """Form parameters; a repeated parameter is invalid_request (RFC 6749 §3.1, §3.2)."""
    if _media_type(request) != FORM:
        raise InvalidRequest(f"the request body must be {FORM}")
    body = await read_body(request, limit)
    try:
        return parse_form(body.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the request body is not valid form encoding") from None


def parse_form(text: str) -> dict[str, str]:
    """`application/x-www-form-urlencoded` parameters, as `parse_qsl(text, keep_blank_values=True,
    errors="strict")` reads them; a repeated or NUL-holding parameter is invalid_request.

    One pass over the fields, and a field without `+` or `%` (a JWT, a grant type) is taken as it is:
    `parse_qsl` replaces and unquotes every name and value, a fifth of a client-credentials request's
    Python outside the signature checks. UnicodeDecodeError for an escape that is not UTF-8.
    """
    form: dict[str, str] = {}
    for field in text.split("&"):
        if not field:
            continue  # as parse_qsl: "a=1&&b=2" holds two parameters
        name, _, value = field.partition("=")
        name, value = _decoded(name), _decoded(value)
        if name in form:
            raise InvalidRequest(f"parameter {_shown(name)} is repeated")
        if "\x00" in value:
            raise InvalidRequest(f"parameter {_shown(name)} is malformed")
        form[name] = value
    return form


def _decoded(part: str) -> str:
    """A name or value of a form field: `+` is a space, `%XX` a UTF-8 byte (RFC 1866 §8.2.1)."""
    if "+" in part:
        part = part.replace("+", " ")
    if "%" not in part:
        return part
    return _unescaped(part) if len(part) <= _REMEMBERED_LENGTH else unquote(part, errors="strict")


# Every request of a client repeats the same short escaped values (`client_assertion_type`'s URN, the grant
# type, the scope): their decoding is remembered, in a bounded cache, so a flood of distinct values only
# evicts it. A value that does not decode raises, and is not remembered.
_REMEMBERED_LENGTH = 128


@lru_cache(maxsize=256)
def _unescaped(part: str) -> str:
    return unquote(part, errors="strict")


def _shown(name: str) -> str:
    """A client's parameter name as an error message may quote it: bounded."""
    return repr(name if len(name) <= 64 else name[:64] + "...")


async def read_json_object(request: Request, limit: int, *, optional: bool = False) -> dict[str, Any]:
    """A JSON object body; with `optional`, an empty body is an empty object."""
    body = await read_body(request, limit)
    if optional and not body.strip():
        return {}
    if _media_type(request) != JSON:
        raise InvalidRequest(f"the request body must be {JSON}")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidRequest("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return data


def optional_param(form: dict[str, str], name: str) -> str | None:
    """A parameter or None; empty counts as absent (RFC 6749 §3.1)."""
    return form.get(name) or None


def required_param(form: dict[str, str], name: str) -> str:
    """A parameter that must be present and non-empty."""
    value = form.get(name)
    if not value:
        raise InvalidRequest(f"parameter {name!r} is missing")
    return value
