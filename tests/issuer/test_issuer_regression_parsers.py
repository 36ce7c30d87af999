"""Regressions from the audit of the issuer's parsers of client input (issue 10): each is linear in its
input and bounded, and bad input is a 4xx with an RFC 6749 body, never a 500.

The raw ASGI calls carry headers exactly as a client sent them (an HTTP client library would refuse or
rewrite some of them); some servers in front of the app let them through.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from issuer._oauth._refresh import MemoryRefreshStore, RefreshLifetimes
from tests.support.issuer import ISSUER, Harness


async def raw_post(
    app: FastAPI, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[int, Any]:
    """One request straight into the ASGI app; the status and the JSON body."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


FORM = (b"content-type", b"application/x-www-form-urlencoded")


async def test_regression_a_malformed_content_length_is_400_not_500(issuer: Harness) -> None:
    # "²" passed str.isdigit() and then made int() raise: a 500.
    for declared in ("²".encode("latin-1"), "٣".encode(), b"-1", b"1e3", b" 12", b""):
        status, body = await raw_post(issuer.app, "/token", [FORM, (b"content-length", declared)], b"a=1")
        assert (status, body["error"]) == (400, "invalid_request"), declared
        assert body["error_description"] == "the Content-Length header is malformed"


async def test_regression_an_endless_content_length_is_413_not_500(issuer: Harness) -> None:
    # 5,000 digits made int() raise (Python refuses numbers of more than 4,300 digits): a 500.
    for declared in (b"9" * 5000, b"0" * 5000 + b"99999"):
        status, body = await raw_post(issuer.app, "/token", [FORM, (b"content-length", declared)], b"a=1")
        assert (status, body["error"]) == (413, "invalid_request"), declared[:8]
    # Leading zeros are still a number: this body is small enough, and is parsed (and refused later).
    status, body = await raw_post(
        issuer.app, "/token", [FORM, (b"content-length", b"0" * 5000 + b"3")], b"a=1"
    )
    assert (status, body["error_description"]) == (400, "parameter 'grant_type' is missing")


async def test_regression_error_messages_quote_a_bounded_parameter_name(issuer: Harness) -> None:
    name = "n" * 8000
    response = await issuer.http.post(
        "/token", content=f"{name}=1&{name}=2", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 400
    assert response.json()["error_description"] == f"parameter {'n' * 64 + '...'!r} is repeated"
    assert response.request.url == f"{ISSUER}/token"


async def test_regression_the_memory_refresh_store_forgets_dead_families_oldest_first() -> None:
    # Every token exchange scanned every family (O(families) per request: 15 ms per exchange with 50,000
    # live families, quadratic in a flood). Families now leave oldest first, with all their tokens; the
    # cost per exchange no longer grows with the families held (measured, not asserted here).
    store = MemoryRefreshStore(RefreshLifetimes(idle=10, absolute=100))
    first = await store.create(client_id="c", sub="alice", sid="s1", scope="read", now=0)
    _, second = await store.spend(first, client_id="c", now=5)
    await store.create(client_id="c", sub="bob", sid="s2", scope="read", now=50)
    assert await store.peek(second) is not None
    await store.create(client_id="c", sub="carol", sid="s3", scope="read", now=101)
    # alice's family (made at 0) is past its absolute lifetime: gone with both of its tokens.
    assert await store.peek(first) is None
    assert await store.peek(second) is None
    assert len(store._families) == 2
    assert len(store._tokens) == 2
