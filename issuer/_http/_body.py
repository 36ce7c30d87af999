"""Strict request bodies: size cap, content type, form parameters without duplicates, JSON objects."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

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
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the request body is not valid form encoding") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise InvalidRequest(f"parameter {_shown(name)} is repeated")
        if "\x00" in value:
            raise InvalidRequest(f"parameter {_shown(name)} is malformed")
        form[name] = value
    return form


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
