"""The auth layer's read of a JSON-RPC body: lone surrogates are refused in every encoding `json` reads."""

from __future__ import annotations

import json

import pytest

from mcp_server._auth._denials import MalformedRequest
from mcp_server._auth._rpc_body import ToolCall, called_tools


def _call(argument: str) -> str:
    params = {"name": "get_balance", "arguments": {"account_type": argument}}
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})


@pytest.mark.parametrize(
    "body",
    [
        _call("\ud800").encode(),  # an escaped lone surrogate in an ASCII body
        _call("\ud800").encode("utf-16-le"),  # the same escape, spelled in UTF-16
        _call("\ud800").encode("utf-32-be"),
        _call("x").replace("x", "\ud800").encode("utf-8", "surrogatepass"),  # raw bytes ED A0 80
        _call("x").replace("x", "\udfff").encode("utf-16-le", "surrogatepass"),  # a raw UTF-16 unit
    ],
)
def test_a_lone_surrogate_is_refused_whatever_the_encoding(body: bytes) -> None:
    with pytest.raises(MalformedRequest, match="lone_surrogate"):
        called_tools(body)


def test_plain_and_escaped_bodies_name_their_tool_calls() -> None:
    assert called_tools(_call("checking").encode()) == [ToolCall("get_balance", {"account_type": "checking"})]
    escaped = _call("caf\u00e9 \U0001f3e0").encode()  # ASCII with escapes: a pair is one character
    assert called_tools(escaped) == [ToolCall("get_balance", {"account_type": "caf\u00e9 \U0001f3e0"})]
    raw = _call("x").replace("x", "caf\u00e9").encode()  # non-ASCII UTF-8, no backslash
    assert called_tools(raw)[0].arguments == {"account_type": "caf\u00e9"}


@pytest.mark.parametrize(
    "body",
    [
        _call("checking").encode(),
        _call("checking").encode("utf-16"),  # json reads UTF-16 and -32; orjson refuses, json reads it
        _call("x").replace('"x"', "NaN").encode(),  # a constant json accepts and FastMCP refuses later
        b'[{"method": "tools/call", "params": {"name": "a"}},'
        b' {"method": "tools/call", "params": {"name": "b"}}]',  # a batch
        b'{"method": "tools/call", "params": {"name": "a", "name": "b"}}',  # a duplicate: the last, as json
    ],
)
def test_the_body_is_read_as_json_reads_it(body: bytes) -> None:
    messages = json.loads(body)
    expected = [
        ToolCall(m["params"]["name"], m["params"].get("arguments"))
        for m in (messages if isinstance(messages, list) else [messages])
    ]
    assert called_tools(body) == expected


@pytest.mark.parametrize("body", [b"{", b'{"a": 1} x', b"\xff\xfe\x00", b"[" * 5000 + b"]" * 5000])
def test_an_unreadable_body_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedRequest, match="malformed_body"):
        called_tools(body)
