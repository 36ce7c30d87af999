"""The micro-benchmark harness of bench_verify and bench_sign: interleaved slices, ratios to raw."""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

import keys

JOSE_KEYS: dict[str, Any] = {"ES256": ECKey, "RS256": RSAKey, "EdDSA": OKPKey}
ISSUER = "http://127.0.0.1:8000"
AUDIENCE = "http://127.0.0.1:8001/mcp"
NOW = 1_700_000_000
RESULTS = Path(__file__).resolve().parent / "results"
RAW = "raw cryptography"


def access_claims() -> dict[str, Any]:
    """A realistic RFC 9068 access token, as docs/architecture.md "Tokens" describes it."""
    return {
        "iss": ISSUER,
        "sub": "alice",
        "aud": AUDIENCE,
        "exp": NOW + 300,
        "iat": NOW,
        "nbf": NOW,
        "jti": "Jx3k9Q2mZt7Lw4RfB8vN1A",
        "client_id": "orchestrator",
        "scope": "read",
        "sid": "room-7f3a9c",
        "act": {"sub": "orchestrator"},
    }


def calibrate(run: Callable[[], Any], seconds: float) -> int:
    """How many calls take about `seconds`."""
    start = time.perf_counter()
    for _ in range(20):
        run()
    return max(5, int(seconds / ((time.perf_counter() - start) / 20)))


def measure(impls: dict[str, Callable[[], Any]], rounds: int, seconds: float) -> dict[str, list[float]]:
    """Ops/s per round for each implementation, interleaved in slices of a few milliseconds.

    Each round runs every implementation in many short alternating slices (rotating the order), so load from
    other processes lands on all of them alike and the per-round ratios stay meaningful on a busy machine.
    """
    slice_seconds = 0.004
    counts = {name: calibrate(run, slice_seconds) for name, run in impls.items()}
    slices = max(1, int(seconds / slice_seconds))
    names = list(impls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        elapsed = dict.fromkeys(names, 0.0)
        for index in range(slices):
            for name in names[index % len(names) :] + names[: index % len(names)]:
                run, count = impls[name], counts[name]
                start = time.perf_counter()
                for _ in range(count):
                    run()
                elapsed[name] += time.perf_counter() - start
        for name in names:
            samples[name].append(counts[name] * slices / elapsed[name])
    return samples


def report(
    benchmark: str,
    samples: Mapping[Any, Mapping[str, list[float]]],
    *,
    ours: str,
    targets: Mapping[str, float],
    rounds: int,
) -> None:
    """Print ops/s and the median per-round ratio to raw; write bench/results/<benchmark>.json."""
    width = max(len(name) for per_alg in samples.values() for name in per_alg)
    result: dict[str, Any] = {"benchmark": benchmark, "rounds": rounds, "results": {}}
    head = f"{'alg':6} {'implementation':{width}} {'ops/s':>10} {'ratio':>7}"
    print(f"{head} {'rounds min..max':>13} {'target':>7}")
    for alg, per_alg in samples.items():
        raw = per_alg[RAW]
        rows: dict[str, dict[str, Any]] = {}
        for name, values in per_alg.items():
            ratios = [v / r for v, r in zip(values, raw, strict=True)]
            ratio = statistics.median(ratios)
            rows[name] = {
                "ops_per_s": round(statistics.median(values)),
                "ratio_to_raw": round(ratio, 3),
                # Per round: how far a noisy machine spread the figures around the medians.
                "ops_per_s_min_max": [round(min(values)), round(max(values))],
                "ratio_to_raw_min_max": [round(min(ratios), 3), round(max(ratios), 3)],
                "ratio_rounds": [round(x, 3) for x in ratios],
            }
            target = f"{targets[alg]:.2f}" if name == ours and alg in targets else ""
            spread = f"{min(ratios):.3f}..{max(ratios):.3f}"
            line = f"{alg:6} {name:{width}} {statistics.median(values):10.0f} {ratio:7.3f}"
            print(f"{line} {spread:>13} {target:>7}")
        entry: dict[str, Any] = {"implementations": rows}
        if alg in targets:
            entry |= {"target": targets[alg], "meets_target": rows[ours]["ratio_to_raw"] >= targets[alg]}
        result["results"][alg] = entry
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{benchmark}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / f'{benchmark}.json'}")


def run_benchmark(
    benchmark: str,
    description: str,
    implementations: Callable[[keys.Algorithm], dict[str, Callable[[], Any]]],
    *,
    ours: str,
    targets: Mapping[str, float],
    rounds: int = 5,
    algorithms: Sequence[keys.Algorithm] = keys.ALGORITHMS,
) -> None:
    """The command line of a micro-benchmark: every algorithm, interleaved rounds, the report."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--seconds", type=float, default=0.3, help="time per implementation per round")
    args = parser.parse_args()
    warnings.simplefilter("ignore", SecurityWarning)  # joserfc 1.8 marks "EdDSA" deprecated (RFC 9864)
    impls = {alg: implementations(alg) for alg in algorithms}
    samples = {alg: measure(impls[alg], args.rounds, args.seconds) for alg in algorithms}
    report(benchmark, samples, ours=ours, targets=targets, rounds=args.rounds)
