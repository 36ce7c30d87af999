"""A storm of tokens with random unknown `kid`s against keys.JWKSCache fed by the real issuer JWKS over HTTP.

Run: .venv/bin/python bench/bench_jwks_storm.py [--quick] [--seconds N]
The issuer runs in its own process; this process holds the MCP server's key source (`keys.JWKSCache`, default
refetch interval 5 s) and `keys.Verifier`. Storm slices (4 storm workers verifying tokens whose `kid` is
fresh and random, at full speed, alongside one worker verifying a real access token from the issuer) alternate
with calm slices (the valid-token worker alone); the storm slices add up to `--seconds` (default 10).
Reported: JWKS requests on the wire during the storm (target: at most one per refetch interval) and the
valid token's verification latency during the storm against the calm slices (target: unaffected; ratio).
Writes bench/results/jwks_storm.json.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
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
from _world import JWT_TYPE, TOKEN_EXCHANGE, auth, client_keys, session_grant, write_issuer_state

import keys

RESOURCE = "http://127.0.0.1:8001/mcp"
STORM_WORKERS = 4
REFETCH_INTERVAL = 5.0
LATENCY_TARGET = 1.10  # "unaffected": within 10 % of the calm median


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class StormTokens:
    """Well-formed ES256 access tokens whose `kid` nobody published: a new random kid every time."""

    def __init__(self, valid: str) -> None:
        _, payload, signature = valid.split(".")
        self._tail = f".{payload}.{signature}"

    def new(self) -> str:
        header = {"alg": "ES256", "typ": "at+jwt", "kid": secrets.token_urlsafe(32)}
        return _b64(json.dumps(header, separators=(",", ":")).encode()) + self._tail


async def valid_access_token(http: httpx.AsyncClient, base: str, ck: dict[str, keys.KeyPair]) -> str:
    """A real access token: `/sessions`, then the orchestrator's token exchange."""
    grant = await session_grant(http, base, ck)
    form = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": grant,
        "subject_token_type": JWT_TYPE,
        "scope": "read",
    }
    answer = await http.post(f"{base}/token", data=form | auth(ck, "orchestrator", base, time.time()))
    answer.raise_for_status()
    token: str = answer.json()["access_token"]
    return token


async def slice_run(
    verifier: keys.Verifier, valid: str, storm: StormTokens | None, seconds: float, counts: dict[str, int]
) -> list[float]:
    """One slice: the valid-token worker (timed per call) and, in a storm, the storm workers."""
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []

    async def valid_worker() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await verifier.verify_async(valid)
            latencies.append(time.perf_counter() - start)
            await asyncio.sleep(0)

    async def storm_worker(tokens: StormTokens) -> None:
        while time.perf_counter() < deadline:
            try:
                await verifier.verify_async(tokens.new())
            except keys.UnknownKey:
                counts["unknown_kid"] += 1
            except (keys.TokenError, keys.KeysUnavailable) as exc:  # anything else would be a finding
                counts[exc.code] = counts.get(exc.code, 0) + 1
            await asyncio.sleep(0)

    workers = [valid_worker()] + ([storm_worker(storm) for _ in range(STORM_WORKERS)] if storm else [])
    await asyncio.gather(*workers)
    return latencies


async def measure(base: str, ck: dict[str, keys.KeyPair], seconds: float, rounds: int) -> dict[str, Any]:
    jwks_url = f"{base}/.well-known/jwks.json"
    wire: list[float] = []

    async def count(request: httpx.Request) -> None:
        if request.url.path.endswith("/jwks.json"):
            wire.append(time.monotonic())

    async with (
        httpx.AsyncClient(timeout=10) as setup,
        httpx.AsyncClient(timeout=10, event_hooks={"request": [count]}) as http,
    ):
        valid = await valid_access_token(setup, base, ck)
        cache = keys.JWKSCache(jwks_url, http, refetch_interval=REFETCH_INTERVAL)
        verifier = keys.Verifier(cache, keys.VerifyPolicy(issuer=base, audience=RESOURCE))
        await cache.refresh()
        await verifier.verify_async(valid)
        storm = StormTokens(valid)
        counts = {"unknown_kid": 0}
        calm: list[float] = []
        stormy: list[float] = []
        calm_med: list[float] = []
        storm_med: list[float] = []
        storm_time = seconds / rounds
        calm_time = min(1.0, storm_time / 2)
        before = len(wire)
        storm_start = time.monotonic()
        for _ in range(rounds):
            got = await slice_run(verifier, valid, None, calm_time, counts)
            calm += got
            calm_med.append(statistics.median(got))
            got = await slice_run(verifier, valid, storm, storm_time, counts)
            stormy += got
            storm_med.append(statistics.median(got))
        span = time.monotonic() - storm_start
        await cache.wait_refresh()
        await cache.aclose()
    fetches = len(wire) - before
    return {
        "calm": calm,
        "storm": stormy,
        "calm_med": calm_med,
        "storm_med": storm_med,
        "fetches": fetches,
        "span": span,
        "storm_seconds": storm_time * rounds,
        "counts": counts,
        "cache_fetch_count": cache.fetch_count,
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, seconds=10, quick_seconds=0.5, argv=argv)
    rounds = 2 if args.quick else 10
    ck = client_keys()
    with tempfile.TemporaryDirectory(prefix="bench-jwks-") as tmp:
        server = ServerProcess("issuer", "--state", str(write_issuer_state(Path(tmp), ck)), inline=args.quick)
        with running(server):
            got = asyncio.run(measure(server.base, ck, args.seconds, rounds))

    storm_tokens = sum(got["counts"].values())
    allowed = math.floor(got["span"] / REFETCH_INTERVAL) + 1
    calm, stormy = latency_ms(got["calm"]), latency_ms(got["storm"])
    ratio = median_ratio(got["storm_med"], got["calm_med"])
    report = Report("jwks_storm", args)
    report.figures = {
        "storm_seconds": round(got["storm_seconds"], 2),
        "wall_span_seconds": round(got["span"], 2),
        "storm_tokens": storm_tokens,
        "storm_tokens_per_s": round(storm_tokens / got["storm_seconds"], 1),
        "storm_outcomes": got["counts"],
        "jwks_fetches_on_wire": got["fetches"],
        "jwks_fetches_allowed": allowed,
        "refetch_interval_s": REFETCH_INTERVAL,
        "valid_calm": calm,
        "valid_storm": stormy,
        "valid_latency_ratio_storm_to_calm": round(ratio, 4),
    }
    report.checks = [
        Check("JWKS fetches during the storm", got["fetches"], allowed, "<=", unit="count"),
        Check("valid-token median latency, storm/calm", ratio, LATENCY_TARGET, "<="),
        Check(
            "storm tokens accepted or mis-refused",
            storm_tokens - got["counts"]["unknown_kid"],
            0,
            "==",
            unit="count",
        ),
    ]
    print_table(
        "jwks_storm: valid-token verification (µs) with and without the unknown-kid storm",
        ("phase", "valid verifies", "p50 µs", "p99 µs", "storm tokens/s", "JWKS fetches"),
        [
            ("calm", calm["n"], calm["median_ms"] * 1000, calm["p99_ms"] * 1000, "-", "-"),
            (
                "storm",
                stormy["n"],
                stormy["median_ms"] * 1000,
                stormy["p99_ms"] * 1000,
                report.figures["storm_tokens_per_s"],
                f"{got['fetches']} (allowed {allowed})",
            ),
        ],
    )
    report.write()


if __name__ == "__main__":
    quiet_logs()
    main()
