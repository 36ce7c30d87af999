"""Refusals the MCP transport answers by itself (a malformed envelope, an unknown method, bad params).

No tool runs for those, so no tool writes their audit line: the auth middleware watches the answer of every
request it let through and reports an HTTP error status, or a JSON-RPC error object in a 200 answer (the
earlier protocol revision answers those with 200), so that every refusal has its audit line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.types import Message, Send

# Our answers are small JSON documents; a larger one is a result, never a bare JSON-RPC error.
_MAX_INSPECTED = 64 * 1024


def watch_refusals(send: Send, report: Callable[[str], None]) -> Send:
    """`send`, calling `report(reason)` once if the answer turns out to be a refusal."""
    status = 200
    is_json = False
    body = bytearray()

    async def watching(message: Message) -> None:
        nonlocal status, is_json
        await send(message)
        if message["type"] == "http.response.start":
            status = int(message["status"])
            content_type = dict(message.get("headers", [])).get(b"content-type", b"")
            is_json = content_type.startswith(b"application/json")
            if status >= 400:
                report(f"http_{status}")
        elif message["type"] == "http.response.body" and status < 400 and is_json:
            if len(body) <= _MAX_INSPECTED:
                body.extend(message.get("body", b""))
            if not message.get("more_body", False) and (code := _jsonrpc_error(bytes(body))) is not None:
                report(f"jsonrpc_{code}")

    return watching


def _jsonrpc_error(body: bytes) -> int | None:
    if b'"error"' not in body or len(body) > _MAX_INSPECTED:
        return None
    try:
        answer: Any = json.loads(body)
    except ValueError:
        return None
    error = answer.get("error") if isinstance(answer, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None
