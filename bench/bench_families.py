"""Token exchange and refresh with 100,000 live refresh families against an empty store, memory and Redis.

Run: .venv/bin/python bench/bench_families.py [--quick] [--seconds N] [--rounds N] [--families N]
     [--stores memory,redis | --no-redis]
Per store kind two issuer processes run side by side: one whose refresh store holds `--families` live families
(made before the timed phase through the store's own `create`, bench/_serve.py's /bench/families), one whose
store starts empty; the Redis kind gives each its own Redis database. Bodies are pre-signed and driven by wrk
as in bench_token_endpoint (the Python fallback without wrk). Rounds interleave full and empty for each grant.
On Redis it also reads redis-server's own CPU time (`INFO cpu`) around each run: Redis CPU per request, full
over empty, says whether Redis itself works harder with the bigger store (the issuer's CPU is the other half).
Target (issue 12): full / empty >= 0.9 for both grants on both stores. Writes bench/results/families.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
from redis import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    RESULTS,
    Args,
    Check,
    Report,
    ServerProcess,
    print_table,
    quiet_logs,
    redis_server,
    running,
    spread,
)
from _load import Load, have_wrk
from _world import client_keys, write_issuer_state
from bench_token_endpoint import Bodies, Driver, issuer_key

TARGET = 0.9
GRANTS = ("exchange", "refresh")
FILLS = ("empty", "full")


def redis_cpu_seconds(url: str) -> float:
    """CPU time (user + system) redis-server has used so far, as it reports it."""
    with Redis.from_url(url) as client:
        info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def measure(
    servers: dict[str, ServerProcess],
    bodies: dict[str, Bodies],
    driver: Driver,
    rounds: int,
    slice_s: float,
    backend: dict[str, dict[str, list[float]]],
    backend_cpu: Callable[[], float] | None = None,
) -> dict[str, dict[str, list[Load]]]:
    """Interleaved rounds; `backend` gets redis-server's CPU ms per request of each timed run (Redis only)."""
    rate = {"exchange": 500.0, "refresh": 1000.0} if rounds > 1 else {"exchange": 50.0, "refresh": 100.0}
    samples: dict[str, dict[str, list[Load]]] = {g: {f: [] for f in FILLS} for g in GRANTS}

    def prepare(grant: str, fill: str, seconds: float) -> list[str]:
        count = int(rate[grant] * seconds * 1.6) + 200
        made = bodies[fill]
        if grant == "exchange":
            return made.exchange(count)
        return made.refresh(driver.refresh_tokens(servers[fill].base, made, count))

    def timed(grant: str, fill: str, seconds: float, prepared: list[str] | None = None) -> Load:
        """One run; a run that ran out of bodies is void: sized up from what it saw and run again."""
        server = servers[fill]
        bodies_now = prepared if prepared is not None else prepare(grant, fill, seconds)
        while True:
            before = backend_cpu() if backend_cpu else math.nan
            load = driver.run(f"{server.base}/token", bodies_now, seconds, server.cpu_seconds)
            after = backend_cpu() if backend_cpu else math.nan
            if not load.out_of_bodies or rounds == 1:  # a --quick run proves the path, its rates do not count
                rate[grant] = max(rate[grant], load.rate)
                used = 1000 * (after - before) / load.requests if load.requests else math.nan
                backend[grant][fill].append(used)
                return load
            rate[grant] *= 2
            bodies_now = prepare(grant, fill, seconds)

    if rounds > 1:  # warm up, first rate estimates (a --quick run of one round goes straight in)
        for grant in GRANTS:
            for fill in FILLS:
                timed(grant, fill, 1)
    for values in backend.values():  # the warm-up's figures do not count
        for fill in FILLS:
            values[fill].clear()
    for index in range(rounds):
        prepared = {(g, f): prepare(g, f, slice_s) for g in GRANTS for f in FILLS}
        for grant in GRANTS:
            for fill in FILLS if index % 2 == 0 else FILLS[::-1]:
                samples[grant][fill].append(timed(grant, fill, slice_s, prepared[grant, fill]))
    return samples


def run_kind(
    kind: str,
    tmp: Path,
    families: int,
    driver: Driver,
    rounds: int,
    slice_s: float,
    backend: dict[str, dict[str, list[float]]],
) -> dict[str, dict[str, list[Load]]]:
    ck = client_keys()
    tmp.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server(tmp)) if kind == "redis" else None
        servers = {}
        for db, fill in enumerate(FILLS, start=1):
            state = write_issuer_state(tmp / f"{kind}-{fill}", ck)
            extra = ["--redis", redis.rsplit("/", 1)[0] + f"/{db}", "--file-keys"] if redis else []
            servers[fill] = ServerProcess("issuer", "--state", str(state), *extra)
        with running(*servers.values()):
            answer = httpx.post(
                f"{servers['full'].base}/bench/families", params={"count": families}, timeout=600
            )
            answer.raise_for_status()
            bodies = {
                fill: Bodies(servers[fill].base, ck, asyncio.run(issuer_key(tmp / f"{kind}-{fill}")))
                for fill in FILLS
            }
            cpu = (lambda: redis_cpu_seconds(redis)) if redis else None
            return measure(servers, bodies, driver, rounds, slice_s, backend, cpu)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run that only proves the bench works")
    parser.add_argument("--seconds", type=float, default=None, help="measuring time per store (default 40)")
    parser.add_argument("--families", type=int, default=None, help="live families in the full store (100000)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per store (default 5)")
    parser.add_argument(
        "--stores", default="memory,redis", help="comma-separated store kinds to run (memory, redis)"
    )
    parser.add_argument("--no-redis", action="store_true", help="the memory store only")
    parser.add_argument("--results", type=Path, default=RESULTS)
    ns = parser.parse_args(argv)
    seconds = ns.seconds if ns.seconds is not None else (4.0 if ns.quick else 40.0)
    families = ns.families if ns.families is not None else (200 if ns.quick else 100_000)
    rounds = 1 if ns.quick else (ns.rounds or 5)
    slice_s = float(max(1, round(seconds / (rounds * len(GRANTS) * len(FILLS)))))
    report = Report("families", Args(quick=ns.quick, seconds=seconds, results=ns.results))
    driver = Driver(have_wrk())
    if not driver.use_wrk:
        report.notes.append("wrk is not installed (Debian: apt-get install wrk): Python generator processes")
    asked = [k for k in ns.stores.split(",") if k]
    if not asked or set(asked) - {"memory", "redis"}:
        parser.error("--stores takes memory, redis or both, comma-separated")
    # --quick: one store proves it
    kinds = [k for k in asked if k == "memory" or not (ns.no_redis or ns.quick)] or ["memory"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-families-") as tmp:
        for kind in kinds:
            backend: dict[str, dict[str, list[float]]] = {g: {f: [] for f in FILLS} for g in GRANTS}
            samples = run_kind(kind, Path(tmp) / kind, families, driver, rounds, slice_s, backend)
            for grant in GRANTS:
                full, empty = samples[grant]["full"], samples[grant]["empty"]
                ratio = spread([f.rate / e.rate for f, e in zip(full, empty, strict=True)])
                cpu = spread(
                    [
                        f.server_cpu_ms_per_request / e.server_cpu_ms_per_request
                        for f, e in zip(full, empty, strict=True)
                    ]
                )
                report.figures[f"{kind} {grant}"] = {
                    "full_over_empty_throughput": ratio,
                    "full_over_empty_cpu_per_request": cpu,
                    "throughput_full": spread([f.rate for f in full]),
                    "throughput_empty": spread([e.rate for e in empty]),
                    "failed_requests": sum(x.errors for x in full + empty),
                }
                if kind == "redis":
                    fulls, empties = backend[grant]["full"], backend[grant]["empty"]
                    report.figures[f"{kind} {grant}"] |= {
                        "redis_cpu_ms_per_request_full": spread(fulls),
                        "redis_cpu_ms_per_request_empty": spread(empties),
                        "redis_full_over_empty_cpu_per_request": spread(
                            [f / e for f, e in zip(fulls, empties, strict=True)]
                        ),
                    }
                rows.append(
                    (
                        f"{kind} {grant}",
                        report.figures[f"{kind} {grant}"]["throughput_empty"]["median"],
                        report.figures[f"{kind} {grant}"]["throughput_full"]["median"],
                        ratio["median"],
                        f"{ratio['min']:.3f}-{ratio['max']:.3f}",
                        cpu["median"],
                        report.figures[f"{kind} {grant}"]
                        .get("redis_full_over_empty_cpu_per_request", {})
                        .get("median", math.nan),
                    )
                )
                report.checks.append(
                    Check(f"{kind} {grant}: full / empty throughput", ratio["median"], TARGET, ">=")
                )
    report.figures |= {
        "families": families,
        "rounds": rounds,
        "slice_seconds": slice_s,
        "generator": driver.name,
    }
    report.checks.append(
        Check(
            "failed /token requests",
            sum(
                v["failed_requests"]
                for k, v in report.figures.items()
                if isinstance(v, dict) and "failed_requests" in v
            ),
            0,
            "==",
            unit="count",
        )
    )
    print_table(
        f"families: {families:,} live families vs an empty store "
        f"({rounds} interleaved rounds of {slice_s:.0f} s)",
        (
            "store / grant",
            "empty req/s",
            "full req/s",
            "full/empty",
            "min-max",
            "CPU/req full/empty",
            "Redis CPU/req full/empty",
        ),
        rows,
    )
    report.write()


if __name__ == "__main__":
    quiet_logs()
    main()
