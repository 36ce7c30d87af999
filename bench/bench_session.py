"""A simulated two-hour voice session, a `get_balance` every 20 s, then payments: issuer requests vs minimum.

Run: .venv/bin/python bench/bench_session.py [--quick] [--seconds SIMULATED]
The real issuer app and the real MCP server app (production wiring: keys.JWKSCache fed by that issuer) run
in-process over `httpx.ASGITransport`; time is one injected clock that the loop moves by 20 s per call, so
two hours take a few seconds. The orchestrator side is the agent's own `TokenManager` + `McpBank`. Counted:
the orchestrator's `/token` requests (minimum: the exchange, then one refresh per 80 % of the 300 s
access-token lifetime = 15 per hour) and the MCP server's JWKS requests (minimum: one per 80 % of the 300 s
max-age = 15 per hour, plus the start-up fetch). Target (issue 7): the minimum.

Payments (issue 15), in the same session afterwards: ten payments of 45.00 below APPROVAL_THRESHOLD (500.00),
each counted in issuer requests (target 1: the refresh grant that returns the bound token); then payments of
750.00 that the user approves in their banking app after 5, 31 and 90 simulated seconds (the app is played by
the backend client over `GET/POST /approvals`; the token manager's poll waits move the clock). Above the
threshold a payment costs the refresh grant that answers interaction_required, `/bc-authorize`, and the polls;
target: polls <= approval time / interval + 1. Writes bench/results/session.json.
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
from _world import bearer, client_keys, open_session, orchestrator_client, seeded_bank, write_issuer_state

import keys
from issuer import create_app as create_issuer
from mcp_server import McpSettings, build_app_from_settings
from orchestrator import ApprovalRequired, McpBank, Movement, TokenManager

ISSUER = "http://127.0.0.1:8000"
RESOURCE = "http://127.0.0.1:8001/mcp"
CALL_EVERY = 20.0
ACCESS_LIFETIME = 300
REFRESH_RATIO = 0.8
JWKS_MAX_AGE = 300
SMALL_PAYMENTS = 10
SMALL_AMOUNT = "45.00"  # ten of them: 450.00, under the 500.00 threshold
LARGE_AMOUNT = "750.00"
APPROVAL_TIMES = (5.0, 31.0, 90.0)  # simulated seconds from /bc-authorize to the user's tap
POLL_INTERVAL = 2.0


class Clock:
    """The one clock every part reads; only the session loop moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Counting(httpx.AsyncBaseTransport):
    """Counts requests by path (and CIBA polls apart) on their way to an in-process app."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.paths: collections.Counter[str] = collections.Counter()
        self.polls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths[request.url.path] += 1
        if b"grant-type%3Aciba" in request.content:
            self.polls += 1
        return await self.inner.handle_async_request(request)

    def total(self) -> int:
        return sum(self.paths.values())


class BankingApp:
    """The user's banking app (client `backend`): approves the one pending request once its time has come."""

    def __init__(self, http: httpx.AsyncClient, ck: dict[str, keys.KeyPair], clock: Clock) -> None:
        self.http = http
        self.ck = ck
        self.clock = clock
        self.approve_at: float | None = None

    async def tick(self) -> None:
        if self.approve_at is None or self.clock.now < self.approve_at:
            return
        self.approve_at = None
        token = await bearer(self.http, ISSUER, self.ck, "backend", "approvals:decide", self.clock.now)
        headers = {"Authorization": f"Bearer {token}"}
        listed = await self.http.get("/approvals", params={"user_id": "alice"}, headers=headers)
        for request in listed.json()["approvals"]:
            await self.http.post(
                f"/approvals/{request['auth_req_id']}", json={"decision": "approve"}, headers=headers
            )


async def payments(
    bank: McpBank, wire: Counting, app: BankingApp, clock: Clock
) -> dict[str, list[dict[str, float]]]:
    """Small payments under the threshold, then large ones the user approves after a while."""
    # From savings (12,000.00): enough for every payment below.
    account = next(a for a in (await bank.get_balance("savings"))["accounts"] if a["status"] == "open")
    payee = (await bank.list_payees())["payees"][0]["payee_id"]
    small: list[dict[str, float]] = []
    for n in range(SMALL_PAYMENTS):
        before = wire.total()
        movement = Movement("payment", account["account_id"], payee, SMALL_AMOUNT, "USD", f"bench-s{n}")
        await bank.make_payment(
            movement.from_account_id, payee, SMALL_AMOUNT, movement.idempotency_key, confirmed=movement
        )
        small.append({"issuer_requests": wire.total() - before})
        clock.now += CALL_EVERY
    large: list[dict[str, float]] = []
    for n, wait in enumerate(APPROVAL_TIMES):
        before, polls_before = wire.total(), wire.polls
        movement = Movement("payment", account["account_id"], payee, LARGE_AMOUNT, "USD", f"bench-l{n}")
        try:
            await bank.make_payment(
                movement.from_account_id, payee, LARGE_AMOUNT, movement.idempotency_key, confirmed=movement
            )
        except ApprovalRequired as waiting:
            app.approve_at = clock.now + wait
            await waiting.approval.outcome()
        polls = wire.polls - polls_before
        large.append(
            {
                "approval_seconds": wait,
                "issuer_requests": wire.total() - before,
                "polls": polls,
                "polls_allowed": wait / POLL_INTERVAL + 1,
            }
        )
        clock.now += CALL_EVERY
    return {"small": small, "large": large}


def _jwks(wire: Counting) -> int:
    return sum(n for path, n in wire.paths.items() if path.endswith("jwks.json"))


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
                app = BankingApp(backend, ck, clock)

                async def poll_wait(seconds: float) -> None:
                    clock.now += seconds  # simulated time: the user taps approve when its time comes
                    await app.tick()

                sid, grant = await open_session(backend, ISSUER, ck, now=clock())
                tokens = TokenManager(
                    orchestrator_client(agent_http, ISSUER, ck, clock=clock),
                    clock=clock,
                    session_id=sid,
                    sleep=poll_wait,
                )
                bank = McpBank(tokens, RESOURCE, transport=httpx2.ASGITransport(app=mcp_app))
                await tokens.start(grant, "read")
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
                # The payments come after the two hours: their traffic is counted apart.
                before_payments = collections.Counter(agent_wire.paths)
                jwks_before_payments = _jwks(jwks_wire)
                paid = await payments(bank, agent_wire, app, clock)
                payment_paths = collections.Counter(agent_wire.paths) - before_payments
                await tokens.revoke()
                await bank.aclose()
    return {
        "calls": calls,
        "failures": failures,
        "last_call_at": last_call,
        "agent": dict(collections.Counter(agent_wire.paths) - payment_paths),
        "payments": paid,
        "jwks": jwks_before_payments,
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
    small = [p["issuer_requests"] for p in got["payments"]["small"]]
    large = got["payments"]["large"]
    report.figures |= {
        "payments_below_threshold_issuer_requests": small,
        "payments_above_threshold": large,
    }
    report.checks += [
        Check("issuer requests per payment below the threshold (max)", max(small), 1, "<=", unit="count"),
        # The CIBA flow (docs/architecture.md, "Payments"): the refresh grant answers interaction_required,
        # then /bc-authorize, then the polls.
        Check(
            "issuer requests above the threshold besides the polls (max)",
            max(p["issuer_requests"] - p["polls"] for p in large),
            2,
            "<=",
            unit="count",
        ),
        *(
            Check(
                f"polls for an approval after {p['approval_seconds']:g} s / allowed",
                p["polls"] / p["polls_allowed"],
                1.0,
                "<=",
            )
            for p in large
        ),
    ]
    print_table(
        f"payments {len(small)} x {SMALL_AMOUNT} under the threshold, {len(large)} x {LARGE_AMOUNT} approved",
        ("payment", "issuer requests", "of which polls", "polls allowed", "approval after"),
        [(f"{SMALL_AMOUNT} (each)", max(small), 0, "-", "-")]
        + [
            (
                LARGE_AMOUNT,
                p["issuer_requests"],
                p["polls"],
                p["polls_allowed"],
                f"{p['approval_seconds']:g} s",
            )
            for p in large
        ],
    )
    report.write()


if __name__ == "__main__":
    quiet_logs()
    main()
