"""Regressions: an outage is not a bad token (issue 10).

Found in review: after `voicebank up` (and in compose) the MCP server refused every valid token with 401 for
~5 s: its first JWKS fetch failed because the issuer was not listening yet, and nothing fetched again before
the 5 s unknown-kid interval. A 401 makes a client throw a good token away. Now the first fetch is retried
with backoff until it succeeds, and while no usable keys are known the answer is 503 with `Retry-After`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.support.clock import FakeClock
from tests.support.stack import Stack, running_stack, segment

STALE_LIMIT = 3600
JWKS_MAX_AGE = 300


class Backoff:
    """The MCP server's wait between JWKS retries: records each delay, returns when the test says so."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._go: asyncio.Queue[None] = asyncio.Queue()
        self._slept = asyncio.Condition()

    async def __call__(self, delay: float) -> None:
        async with self._slept:
            self.delays.append(delay)
            self._slept.notify_all()
        await self._go.get()

    def release(self) -> None:
        """Let the loader try again."""
        self._go.put_nowait(None)

    async def next_try(self) -> None:
        """Let the loader try again, and wait until that try failed (it sleeps again)."""
        count = len(self.delays)
        self.release()
        async with self._slept:
            await asyncio.wait_for(self._slept.wait_for(lambda: len(self.delays) > count), 10)


def audit_reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "voicebank.audit"]
    return [line["reason"] for line in lines if line["outcome"] == "denied"]


async def assert_unavailable(stack: Stack, token: str) -> None:
    response = await stack.post(token, "list_payees", {})
    assert response.status_code == 503, response.text
    assert response.json() == {"error": "temporarily_unavailable"}
    assert response.headers["retry-after"] == "2"
    assert "www-authenticate" not in response.headers
    ready = await stack.mcp_http.get("/readyz")
    assert (ready.status_code, ready.json()) == (503, {"status": "unavailable", "reason": "jwks_unavailable"})


async def test_regression_issuer_arriving_late_is_503_then_tokens_work_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voicebank.audit")
    backoff = Backoff()
    async with running_stack(tmp_path, issuer_link_down=True, jwks_retry_sleep=backoff) as stack:
        # The MCP server started while its issuer did not answer: alive, not ready, and no 401s.
        assert (await stack.mcp_http.get("/healthz")).status_code == 200
        read = await (await stack.tokens()).get_token("read")
        await assert_unavailable(stack, read)
        await backoff.next_try()
        await backoff.next_try()
        await assert_unavailable(stack, read)
        assert backoff.delays == [0.05, 0.1, 0.2]  # exponential, capped at 2 s

        # The issuer answers now: the next retry loads the keys, and the same token works at the same
        # instant (nothing waits for the 5 s unknown-kid interval).
        stack.link.down = False
        fetches = stack.link.jwks_fetches
        backoff.release()
        loader: Any = stack.mcp_app.state.jwks_loader
        await asyncio.wait_for(loader.loaded.wait(), 10)
        assert loader.attempts == 4
        assert stack.link.jwks_fetches == fetches + 1
        assert (await stack.call(read, "list_payees"))["payees"]
        assert (await stack.mcp_http.get("/readyz")).json() == {"status": "ready"}
    assert audit_reasons(caplog) == ["jwks_unavailable"] * 2


async def test_regression_keys_stale_past_the_limit_are_503_not_401(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voicebank.audit")
    read = await (await stack.tokens()).get_token("read")
    assert (await stack.call(read, "list_payees"))["payees"]
    stack.link.down = True
    # Past max-age plus the stale limit with the issuer still down: no usable keys, so "try again".
    clock: FakeClock = stack.clock
    clock.now = segment(read, 1)["iat"] + JWKS_MAX_AGE + STALE_LIMIT + 1
    fresh = await (await stack.tokens()).get_token("read")
    await assert_unavailable(stack, fresh)
    assert audit_reasons(caplog) == ["jwks_unavailable"]
    # The issuer is back: the next allowed refetch restores service.
    stack.link.down = False
    clock.advance(5)
    assert (await stack.call(fresh, "list_payees"))["payees"]
    assert (await stack.mcp_http.get("/readyz")).status_code == 200
