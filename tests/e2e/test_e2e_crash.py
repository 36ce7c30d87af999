"""An issuer replica SIGKILLed mid-rotation restarts with a whole ring; the other replica keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest
import redis.asyncio as aioredis

from orchestrator import TokenManager
from orchestrator._tokens._dpop import CallKey
from tests.support.e2e import (
    Stack,
    active_kids,
    admin_keys,
    bearer,
    eventually,
    fresh_token,
    issuer_client,
    kid_of,
    mcp_post,
    session_tokens,
    voicebank_cli,
)

pytestmark = pytest.mark.e2e

# When the SIGKILL lands: as soon as the request is on the wire (the rotation not yet committed), the moment
# the ring's version moves in Redis (committed and published, no answer written), or once the answer's
# status line arrived (done).
MOMENTS = ("sent", "committed", "answered")
VERSION_KEY = "voicebank:keys:version"


async def _rotate_then_kill(stack: Stack, admin_token: str, moment: str) -> None:
    """Fire a forced rotation at replica 0 over a raw socket and SIGKILL the replica at `moment`."""
    port = httpx.URL(stack.issuer_urls[0]).port
    assert port is not None
    body = json.dumps({"force": True}).encode()
    head = (
        f"POST /admin/keys/rotate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {admin_token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    redis = aioredis.Redis.from_url(stack.redis_url)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        version = await redis.get(VERSION_KEY)
        writer.write(head + body)
        await writer.drain()
        if moment == "committed":
            async with asyncio.timeout(10):
                while await redis.get(VERSION_KEY) == version:
                    continue  # each GET is the wait: kill as soon as the commit is visible
        elif moment == "answered":
            status = await reader.readline()
            assert status.startswith(b"HTTP/1.1 200"), status
        stack.issuers[0].kill()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        await redis.aclose()


class Calls:
    """Read calls with fresh tokens from issuer replica 1; every answer is recorded."""

    def __init__(self, stack: Stack, tokens: TokenManager, key: CallKey) -> None:
        self.stack = stack
        self.tokens = tokens
        self.key = key
        self.failures: list[tuple[str, int]] = []  # must stay empty
        self.waits = 0  # MCP replica 0 refusing, until its retried refetch reaches the restarted replica 0
        self.made = 0

    async def once(self, replica: int, *, strict: bool = True) -> bool:
        token = await fresh_token(self.tokens)
        answer = await mcp_post(
            self.stack.mcp_urls[replica],
            token,
            "list_payees",
            {},
            dpop=self.key,
            resource=self.stack.resource,
        )
        self.made += 1
        if answer.status_code != 200:
            if strict:
                self.failures.append((kid_of(token), answer.status_code))
            else:
                self.waits += 1
        return answer.status_code == 200


async def test_an_issuer_replica_killed_mid_rotation_restarts_with_one_active_key(stack: Stack) -> None:
    replica0 = stack.issuers[0]
    async with session_tokens(stack, target=1) as (tokens, _, key):
        calls = Calls(stack, tokens, key)
        assert await calls.once(0)
        assert await calls.once(1)
        kids_seen = {kid_of(await fresh_token(tokens))}
        for moment in MOMENTS:
            http, _ = issuer_client(stack, target=0)
            async with http:
                admin_token = await bearer(http, stack, "admin", "keys:admin")
            await _rotate_then_kill(stack, admin_token, moment)
            # While replica 0 is dead and restarting, MCP replica 1 (keys from replica 1) never refuses.
            assert await calls.once(1)
            restart = asyncio.ensure_future(asyncio.to_thread(replica0.start))
            while not restart.done():
                await calls.once(1)
                await asyncio.wait({restart}, timeout=0.2)
            await restart

            listed = await admin_keys(stack, 0)
            assert len(active_kids(listed)) == 1, listed
            assert listed == await admin_keys(stack, 1)
            active = active_kids(listed)[0]
            kids_seen.add(active)
            assert kid_of(await fresh_token(tokens)) == active
            assert await calls.once(1)
            # MCP replica 0's key source was down; its refetch for the rotation event is retried until
            # replica 0 answers again (a cross-process effect: bounded polling).
            assert await eventually(lambda: calls.once(0, strict=False), attempts=60)
        assert calls.failures == []
        assert len(kids_seen) >= 3  # the "committed" and "answered" kills did rotate
        assert calls.made >= 4 * len(MOMENTS)

    # The operator's view agrees, through the real command line.
    table = await voicebank_cli(stack, "keys", "list", "--issuer", stack.issuer_urls[0])
    assert table.code == 0, table.out
    listed = await admin_keys(stack, 1)
    rows = {line.split()[0]: line.split()[2] for line in table.out.splitlines()[1:] if line.strip()}
    assert rows == {k["kid"]: k["state"] for k in listed}
    assert list(rows.values()).count("active") == 1
