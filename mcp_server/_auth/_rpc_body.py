"""What a JSON-RPC request body calls, read once by the auth layer; anything it cannot read is refused.

Fail closed: a body this layer cannot read is never forwarded to a parser that might read it differently (a
scope check that saw no tool call must never let one through). Every step is linear in the body, which the
middleware has already capped: one C-level JSON parse and one walk over what it produced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from mcp_server._auth._denials import MalformedRequest

# A code point in the surrogate range can only come from an unpaired `\ud800`-style escape (json.loads joins
# pairs): such a string has no UTF-8 form, and RFC 8259 §8.2 leaves its meaning to chance.
_SURROGATE = re.compile("[\ud800-\udfff]")


class ToolCall(NamedTuple):
    """One `tools/call` of the body: the tool's name and its arguments as sent (any JSON value)."""

    name: str
    arguments: Any


def called_tools(body: bytes) -> list[ToolCall]:
    """The tool calls of a JSON-RPC message (or batch); `MalformedRequest` for anything unreadable."""
    if not body.strip():
        return []
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        # Whatever orjson refuses (UTF-16, NaN, lone surrogates, bad JSON) json reads or refuses as before:
        # the same documents pass. Only an integer beyond 64 bits differs (orjson: a float), and no tool
        # name or bound argument is a number.
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise MalformedRequest("malformed_body") from None
    if _may_hold_surrogates(body) and _has_lone_surrogate(payload):
        raise MalformedRequest("lone_surrogate")
    messages = payload if isinstance(payload, list) else [payload]
    calls: list[ToolCall] = []
    for message in messages:
        if isinstance(message, Mapping) and message.get("method") == "tools/call":
            params = message.get("params")
            if not isinstance(params, Mapping) or not isinstance(name := params.get("name"), str):
                raise MalformedRequest("malformed_tool_call")
            calls.append(ToolCall(name, params.get("arguments")))
    return calls


def _may_hold_surrogates(body: bytes) -> bool:
    """Whether the parsed body can hold a surrogate at all: the walk over it is skipped when not.

    Each encoding `json.loads` reads (UTF-8, -16, -32) spells a backslash with the byte 0x5C, and ASCII
    bytes make no code unit in the surrogate range: an ASCII body without a backslash has no surrogate.
    """
    return b"\\" in body or not body.isascii()


def _has_lone_surrogate(payload: Any) -> bool:
    pending = [payload]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
