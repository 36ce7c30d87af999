"""Continuous MCP tool calls while the issuer's keys rotate (admin API, forced) every 2 s: count failed calls.

Run: .venv/bin/python bench/bench_rotation.py [--quick] [--seconds N] [--every S]
The issuer and the MCP server (production wiring: keys.JWKSCache over HTTP to the issuer's JWKS) run in
their own processes on loopback. This process runs orchestrator sessions exactly as the agent does
(`TokenManager` + `McpBank` over the real issuer client): readers call `get_balance` back to back on cached
`read` tokens (the issuer's access-token lifetime is cut to 10 s so they are refreshed every 8 s), payers call
`make_payment` of 0.01 back to back, each on a fresh single-use `transact` token signed by whatever key is
active at that moment. Meanwhile the admin client forces a rotation every `--every` seconds (default 2) for
`--seconds` (default 30). Target (issue 7): zero failed calls. Writes bench/results/rotation.json.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Check,
    Report,
    ServerProcess,
    free_port,
    latency_ms,
    parse_args,
    print_table,
    quiet_logs,
    redis_server,
    running,
)
from _world import bearer, client_keys, orchestrator_client, seeded_bank, session_grant, write_issuer_state

import keys
from orchestrator import BankError, McpBank, Movement, TokenManager

READERS = 2
PAYERS = 2
ACCESS_LIFETIME = 10


async def rotate_forever(
    http: httpx.AsyncClient, base: str, ck: dict[str, keys.KeyPair], every: float, log: list[dict[str, Any]]
) -> None:
    """Force a rotation every `every` seconds; the admin token is renewed well before it expires."""
    token, token_at = "", -1e9
    while True:
        await asyncio.sleep(every)
        if time.monotonic() - token_at > 120:
            token, token_at = await bearer(http, base, ck, "admin", "keys:admin"), time.monotonic()
        answer = await http.post(
            f"{base}/admin/keys/rotate", json={"force": True}, headers={"Authorization": f"Bearer {token}"}
        )
        active = [k["kid"] for k in answer.json().get("keys", []) if k.get("state") == "active"]
        log.append({"at": time.monotonic(), "status": answer.status_code, "active": active[:1]})


async def measure(
    issuer: str, mcp_url: str, ck: dict[str, keys.KeyPair], seconds: float, every: float
) -> dict[str, Any]:
    calls: dict[str, list[float]] = {"get_balance": [], "make_payment": []}
    failures: collections.Counter[str] = collections.Counter()
    rotations: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=10) as http:
        banks: list[tuple[str, McpBank, TokenManager]] = []
        for index in range(READERS + PAYERS):
            tokens = TokenManager(orchestrator_client(http, issuer, ck))
            await tokens.start(await session_grant(http, issuer, ck), "read")
            role = "get_balance" if index < READERS else "make_payment"
            banks.append((role, McpBank(tokens, mcp_url), tokens))
        first = banks[0][1]
        account = next(a for a in (await first.get_balance("checking"))["accounts"] if a["status"] == "open")
        payee = (await first.list_payees())["payees"][0]
        deadline = time.monotonic() + seconds

        async def worker(role: str, bank: McpBank) -> None:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                try:
                    if role == "get_balance":
                        await bank.get_balance()
                    else:
                        key = str(uuid.uuid4())
                        source, target = account["account_id"], payee["payee_id"]
                        confirmed = Movement("payment", source, target, "0.01", "USD", key)
                        await bank.make_payment(source, target, "0.01", key, confirmed=confirmed)
                except BankError as exc:
                    failures[f"{role}: {exc.code}: {exc}"] += 1
                    continue
                calls[role].append(time.perf_counter() - start)

        rotator = asyncio.create_task(rotate_forever(http, issuer, ck, every, rotations))
        try:
            await asyncio.gather(*(worker(role, bank) for role, bank, _ in banks))
        finally:
            rotator.cancel()
            await asyncio.gather(rotator, return_exceptions=True)
            for _, bank, tokens in banks:
                await tokens.revoke()
                await bank.aclose()
    return {"calls": calls, "failures": failures, "rotations": rotations}


def main(argv: Sequence[str] | None = None) -> None:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--every", type=float, default=None)
    extra.add_argument("--mcp-refetch-interval", type=float, default=None, help="diagnosis: see _serve.py")
    extra.add_argument(
        "--no-redis",
        action="store_true",
        help="file key store and no key events (default: a redis-server of its own, as replicas run)",
    )
    known, rest = extra.parse_known_args(argv)
    args = parse_args(__doc__, seconds=30, quick_seconds=1.5, argv=rest)
    every = known.every or (args.seconds / 3 if args.quick else 2.0)
    refetch = (
        [] if known.mcp_refetch_interval is None else ["--refetch-interval", str(known.mcp_refetch_interval)]
    )
    ck = client_keys()
    with tempfile.TemporaryDirectory(prefix="bench-rotation-") as tmp, contextlib.ExitStack() as stack:
        redis = [] if known.no_redis else ["--redis", stack.enter_context(redis_server(Path(tmp)))]
        state = write_issuer_state(Path(tmp) / "issuer", ck)
        mcp_port = free_port()
        mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
        issuer = ServerProcess(
            "issuer",
            "--state",
            str(state),
            "--resource",
            mcp_url,
            "--access-lifetime",
            str(ACCESS_LIFETIME),
            *redis,
            inline=args.quick,
        )
        with running(issuer):
            mcp = ServerProcess(
                "mcp",
                "--auth",
                "full",
                "--db",
                str(seeded_bank(Path(tmp) / "bank.db")),
                "--issuer",
                issuer.base,
                *refetch,
                *redis,
                port=mcp_port,
                inline=args.quick,
            )
            with running(mcp):
                got = asyncio.run(measure(issuer.base, mcp_url, ck, args.seconds, every))

    made = {role: len(samples) for role, samples in got["calls"].items()}
    failed = sum(got["failures"].values())
    rotations = got["rotations"]
    report = Report("rotation", args)
    report.figures = {
        "rotate_every_s": every,
        "mcp_refetch_interval_s": known.mcp_refetch_interval or 5.0,
        "key_events": not known.no_redis,
        "rotations": len(rotations),
        "rotations_refused": sum(1 for r in rotations if r["status"] != 200),
        "calls_ok": made,
        "calls_failed": failed,
        "failures": dict(got["failures"]),
        "latency": {role: latency_ms(samples) for role, samples in got["calls"].items()},
    }
    report.checks = [
        Check("failed tool calls", failed, 0, "==", unit="count"),
        Check(
            "rotations done",
            len(rotations) - report.figures["rotations_refused"],
            max(1, len(rotations)),
            ">=",
            unit="count",
        ),
    ]
    rows = [
        (
            role,
            made[role],
            failed_for(got["failures"], role),
            report.figures["latency"][role]["median_ms"],
            report.figures["latency"][role]["p99_ms"],
        )
        for role in made
    ]
    print_table(
        f"rotation: {len(rotations)} forced rotations, one every {every:g} s"
        + ("" if known.no_redis else ", Redis key store and key events"),
        ("tool", "ok", "failed", "p50 ms", "p99 ms"),
        rows,
    )
    for reason, count in got["failures"].most_common(5):
        print(f"  {count} x {reason}")
    report.write()


def failed_for(failures: collections.Counter[str], role: str) -> int:
    return sum(count for reason, count in failures.items() if reason.startswith(role))


if __name__ == "__main__":
    quiet_logs()
    main()
