"""Issuer `/token` under 16 concurrent clients over loopback HTTP, against a bare endpoint of the same server.

Run: .venv/bin/python bench/bench_token_endpoint.py [--quick] [--seconds N]
One issuer process (uvicorn, file key store, in-memory refresh store) also serves `POST /bare`, a FastAPI
handler answering a fixed JSON body of a token answer's size. Interleaved rounds run the refresh-token grant
(each client rotates its own refresh family), the token exchange (a fresh session grant per request) and the
bare endpoint; every request carries a fresh `private_key_jwt` client assertion, as the orchestrator's do.
Session grants are signed in this process with the issuer's own active key, read from its key store, with
the claims `/sessions` gives them, so exchanges need no `/sessions` traffic. Target (issue 7): >= 0.5 of the
bare endpoint's throughput; p99 reported. Writes bench/results/token_endpoint.json.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Check,
    Report,
    ServerProcess,
    latency_ms,
    median_ratio,
    parse_args,
    print_table,
    quiet_logs,
    running,
)
from _world import JWT_TYPE, TOKEN_EXCHANGE, auth, client_keys, write_issuer_state

import keys

VARIANTS = ("bare", "refresh", "exchange")
CONCURRENCY = 16
TARGET = 0.5

Call = Callable[[], Awaitable[None]]


class Grants:
    """Session grants as `/sessions` mints them, signed with the issuer's active key."""

    def __init__(self, key: keys.KeyPair, issuer: str) -> None:
        self._key = key
        self._issuer = issuer

    def new(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self._issuer,
            "sub": "alice",
            "aud": self._issuer,
            "iat": now,
            "exp": now + 600,
            "jti": secrets.token_urlsafe(16),
            "sid": f"vb-{secrets.token_urlsafe(12)}",
            "scope": "read transact configure",
            "may_act": {"sub": "orchestrator"},
        }
        return keys.sign(claims, self._key, typ="session-grant+jwt")


async def issuer_key(state: Path) -> keys.KeyPair:
    store = keys.FileKeyStore(
        state / "keys", passphrase=None, policy=keys.RotationPolicy(max_token_lifetime=600)
    )
    ring = await store.load(time.time())
    return ring.signing_key("ES256")


async def run_slice(calls: list[Call], seconds: float) -> tuple[list[float], float, int]:
    """All callers at once for `seconds`: latencies, requests per second, failures."""
    samples: list[float] = []
    failures = 0
    start_all = time.perf_counter()
    deadline = start_all + seconds

    async def worker(call: Call) -> None:
        nonlocal failures
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                await call()
            except RuntimeError:
                failures += 1
                continue
            samples.append(time.perf_counter() - start)

    await asyncio.gather(*(worker(call) for call in calls))
    return samples, len(samples) / (time.perf_counter() - start_all), failures


def callers(
    http: httpx.AsyncClient, base: str, ck: dict[str, keys.KeyPair], grants: Grants, refresh_tokens: list[str]
) -> dict[str, list[Call]]:
    token_url = f"{base}/token"

    def bare() -> Call:
        async def call() -> None:
            form = {"grant_type": "refresh_token", "refresh_token": "x" * 43, "scope": "read"}
            response = await http.post(
                f"{base}/bare", data=form | auth(ck, "orchestrator", base, time.time())
            )
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")

        return call

    def refresh(index: int) -> Call:
        async def call() -> None:
            form = {"grant_type": "refresh_token", "refresh_token": refresh_tokens[index], "scope": "read"}
            response = await http.post(token_url, data=form | auth(ck, "orchestrator", base, time.time()))
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:120]}")
            refresh_tokens[index] = response.json()["refresh_token"]

        return call

    def exchange() -> Call:
        async def call() -> None:
            form = {
                "grant_type": TOKEN_EXCHANGE,
                "subject_token": grants.new(),
                "subject_token_type": JWT_TYPE,
                "scope": "read",
            }
            response = await http.post(token_url, data=form | auth(ck, "orchestrator", base, time.time()))
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:120]}")

        return call

    return {
        "bare": [bare() for _ in range(CONCURRENCY)],
        "refresh": [refresh(i) for i in range(CONCURRENCY)],
        "exchange": [exchange() for _ in range(CONCURRENCY)],
    }


async def measure(
    base: str, state: Path, ck: dict[str, keys.KeyPair], rounds: int, slice_s: float
) -> dict[str, Any]:
    grants = Grants(await issuer_key(state), base)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    samples: dict[str, dict[str, list[Any]]] = {v: {"lat": [], "thr": [], "failures": []} for v in VARIANTS}
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        refresh_tokens: list[str] = []
        for _ in range(CONCURRENCY):  # one refresh family per client, as one orchestrator session holds
            form = {
                "grant_type": TOKEN_EXCHANGE,
                "subject_token": grants.new(),
                "subject_token_type": JWT_TYPE,
            }
            answer = await http.post(f"{base}/token", data=form | auth(ck, "orchestrator", base, time.time()))
            answer.raise_for_status()
            refresh_tokens.append(answer.json()["refresh_token"])
        calls = callers(http, base, ck, grants, refresh_tokens)
        for variant in VARIANTS:  # warm up: connections open, code paths hot
            await run_slice(calls[variant], min(0.2, slice_s))
        for index in range(rounds):
            for variant in VARIANTS[index % 3 :] + VARIANTS[: index % 3]:
                lat, thr, failures = await run_slice(calls[variant], slice_s)
                samples[variant]["lat"] += lat
                samples[variant]["thr"].append(thr)
                samples[variant]["failures"].append(failures)
    return samples


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, seconds=30, quick_seconds=0.6, argv=argv)
    rounds = 1 if args.quick else 5
    slice_s = args.seconds / (rounds * len(VARIANTS))
    ck = client_keys()
    with tempfile.TemporaryDirectory(prefix="bench-token-") as tmp:
        state = write_issuer_state(Path(tmp), ck)
        server = ServerProcess("issuer", "--state", str(state), inline=args.quick)
        with running(server):
            samples = asyncio.run(measure(server.base, state, ck, rounds, slice_s))

    report = Report("token_endpoint", args)
    bare_thr = samples["bare"]["thr"]
    rows = []
    for variant in VARIANTS:
        got = samples[variant]
        ratio = median_ratio(got["thr"], bare_thr)
        figures = latency_ms(got["lat"]) | {
            "throughput_per_s": round(statistics.median(got["thr"]), 1),
            "ratio_to_bare": round(ratio, 4),
            "failures": sum(got["failures"]),
        }
        report.figures[variant] = figures
        rows.append(
            (
                variant,
                figures["throughput_per_s"],
                figures["median_ms"],
                figures["p99_ms"],
                ratio,
                figures["failures"],
            )
        )
    report.figures |= {"concurrency": CONCURRENCY, "rounds": rounds, "slice_seconds": round(slice_s, 3)}
    report.checks = [
        Check("refresh grant throughput / bare", report.figures["refresh"]["ratio_to_bare"], TARGET, ">="),
        Check("token exchange throughput / bare", report.figures["exchange"]["ratio_to_bare"], TARGET, ">="),
        Check(
            "failed /token requests",
            sum(samples["refresh"]["failures"] + samples["exchange"]["failures"]),
            0,
            "==",
            unit="count",
        ),
    ]
    print_table(
        f"token_endpoint: {CONCURRENCY} concurrent clients over loopback HTTP (latency in ms)",
        ("endpoint", "req/s", "p50", "p99", "× bare", "failures"),
        rows,
    )
    report.write()


if __name__ == "__main__":
    quiet_logs()
    main()
