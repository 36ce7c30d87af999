"""A simulated two-hour voice session, a `get_balance` every 20 s: issuer requests per hour vs the minimum.

Run: .venv/bin/python bench/bench_session.py [--quick] [--seconds SIMULATED]
The real issuer app and the real MCP server app (production wiring: keys.JWKSCache fed by that issuer) run
in-process over `httpx.ASGITransport`; time is one injected clock that the loop moves by 20 s per call, so
two hours take a few seconds. The orchestrator side is the agent's own `TokenManager` + `McpBank`. Counted:
the orchestrator's `/token` requests (minimum: the exchange, then one refresh per 80 % of the 300 s
access-token lifetime = 15 per hour) and the MCP server's JWKS requests (minimum: one per 80 % of the 300 s
max-age = 15 per hour, plus the start-up fetch). Target (issue 7): the minimum. Writes
bench/results/session.json.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import httpx2
from starlette.applications import Starlette

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Check, Report, parse_args, print_table, quiet_logs
from _serve import issuer_settings
from _world import client_keys, orchestrator_client, seeded_bank, session_grant, write_issuer_state

from issuer import create_app as create_issuer
from mcp_server import McpSettings, build_app_from_settings
from orchestrator import McpBank, TokenManager

ISSUER = "http://127.0.0.1:8000"
RESOURCE = "http://127.0.0.1:8001/mcp"
CALL_EVERY = 20.0
ACCESS_LIFETIME = 300
REFRESH_RATIO = 0.8
JWKS_MAX_AGE = 300


class Clock:
    """The one clock every part reads; only the session loop moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Counting(httpx.AsyncBaseTransport):
    """Counts requests by path on their way to an in-process app."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.paths: collections.Counter[str] = collections.Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths[request.url.path] += 1
        return await self.inner.handle_async_request(request)


async def _never(_: float) -> None:
    await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def lifespan_in_task(app: Starlette) -> AsyncIterator[None]:
    """Run an app's lifespan in a task of its own (anyio scopes must exit in the task that entered them)."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with app.router.lifespan_context(app):
            started.set()
            await stop.wait()

    task = asyncio.create_task(run())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if not started.is_set():
        waiter.cancel()
        await task
    try:
        yield
    finally:
        stop.set()
        await task


async def simulate(state: Path, bank_db: Path, duration: float) -> dict[str, Any]:
    clock = Clock(float(int(time.time())))
    ck = client_keys()
    write_issuer_state(state, ck)
    settings = issuer_settings(state, ISSUER, RESOURCE, ACCESS_LIFETIME)
    issuer_app = create_issuer(settings, clock=clock, rotation_sleep=_never)
    mcp_settings = McpSettings(
        mcp_issuer_url=ISSUER, mcp_resource_url=RESOURCE, bank_db_url=f"sqlite:///{bank_db}", redis_url=None
    )
    async with issuer_app.router.lifespan_context(issuer_app):
        agent_wire = Counting(httpx.ASGITransport(app=issuer_app))
        jwks_wire = Counting(httpx.ASGITransport(app=issuer_app))
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=issuer_app), base_url=ISSUER) as backend,
            httpx.AsyncClient(transport=agent_wire, base_url=ISSUER) as agent_http,
            httpx.AsyncClient(transport=jwks_wire, base_url=ISSUER) as mcp_http,
        ):
            mcp_app = build_app_from_settings(mcp_settings, clock=clock, http_client=mcp_http)
            async with lifespan_in_task(mcp_app):
                tokens = TokenManager(orchestrator_client(agent_http, ISSUER, ck, clock=clock), clock=clock)
                bank = McpBank(tokens, RESOURCE, transport=httpx2.ASGITransport(app=mcp_app))
                await tokens.start(await session_grant(backend, ISSUER, ck, now=clock()), "read")
                calls = failures = 0
                start = clock.now
                while clock.now - start < duration:
                    try:
                        await bank.get_balance()
                        calls += 1
                    except Exception:  # a failed call is a figure here, not a crash
                        failures += 1
                    clock.now += CALL_EVERY
                last_call = clock.now - CALL_EVERY - start
                await tokens.revoke()
                await bank.aclose()
    return {
        "calls": calls,
        "failures": failures,
        "last_call_at": last_call,
        "agent": dict(agent_wire.paths),
        "jwks": sum(n for path, n in jwks_wire.paths.items() if path.endswith("jwks.json")),
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, seconds=7200, quick_seconds=600, argv=argv)
    with tempfile.TemporaryDirectory(prefix="bench-session-") as tmp:
        got = asyncio.run(simulate(Path(tmp) / "issuer", seeded_bank(Path(tmp) / "bank.db"), args.seconds))

    hours = args.seconds / 3600
    refresh_every = REFRESH_RATIO * ACCESS_LIFETIME
    token_requests = got["agent"].get("/token", 0)
    minimum_token = 1 + math.floor(
        got["last_call_at"] / refresh_every
    )  # the exchange + one refresh per 240 s
    jwks_every = REFRESH_RATIO * JWKS_MAX_AGE
    minimum_jwks = 1 + math.floor(got["last_call_at"] / jwks_every)  # start-up + one refresh per 240 s
    report = Report("session", args)
    report.figures = {
        "simulated_seconds": args.seconds,
        "tool_calls": got["calls"],
        "failed_calls": got["failures"],
        "issuer_requests_by_path": got["agent"],
        "token_requests": token_requests,
        "token_requests_minimum": minimum_token,
        "token_requests_per_hour": round(token_requests / hours, 2),
        "token_requests_per_hour_minimum": round(minimum_token / hours, 2),
        "token_ratio_to_minimum": round(token_requests / minimum_token, 4),
        "jwks_requests": got["jwks"],
        "jwks_requests_minimum": minimum_jwks,
        "jwks_requests_per_hour": round(got["jwks"] / hours, 2),
    }
    report.checks = [
        Check("/token requests / minimum", token_requests / minimum_token, 1.0, "<="),
        Check("JWKS requests / minimum", got["jwks"] / minimum_jwks, 1.0, "<="),
        Check("failed tool calls", got["failures"], 0, "==", unit="count"),
    ]
    print_table(
        f"session: {args.seconds / 60:g} simulated minutes, a get_balance every {CALL_EVERY:g} s",
        ("issuer traffic", "requests", "per hour", "minimum", "min per hour"),
        [
            (
                "orchestrator /token",
                token_requests,
                token_requests / hours,
                minimum_token,
                minimum_token / hours,
            ),
            ("orchestrator /revoke", got["agent"].get("/revoke", 0), "-", 1, "-"),
            ("MCP server JWKS", got["jwks"], got["jwks"] / hours, minimum_jwks, minimum_jwks / hours),
        ],
    )
    report.write()


if __name__ == "__main__":
    quiet_logs()
    main()
