"""Run every benchmark in sequence, each in its own process, then print all ratios against their targets.

Run: .venv/bin/python bench/run_all.py [--quick] [--only NAME ...] [--results DIR]
Each bench writes `<results>/<name>.json` (bench_verify and bench_sign always write to bench/results); the
summary reads those files, so it also shows a bench's previous figures when that bench fails to run.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR, RESULTS, ROOT, print_table

BENCHES = (
    "verify",
    "sign",
    "mcp_call",
    "token_endpoint",
    "jwks_storm",
    "rotation",
    "session",
    "hostile_input",
)
# bench_verify and bench_sign have their own command line: a short run instead of --quick.
QUICK_ARGS = {
    "verify": ["--rounds", "1", "--seconds", "0.05"],
    "sign": ["--rounds", "1", "--seconds", "0.05"],
}
OWN_RESULTS = {"verify", "sign"}
OURS = {"verify": "keys.Verifier (StaticKeys)", "sign": "keys.sign"}


def command(name: str, quick: bool, results: Path) -> list[str]:
    argv = [sys.executable, str(BENCH_DIR / f"bench_{name}.py")]
    if name in OWN_RESULTS:
        return argv + (QUICK_ARGS[name] if quick else [])
    return argv + (["--quick"] if quick else []) + ["--results", str(results)]


def summary_rows(name: str, document: dict[str, Any]) -> list[tuple[Any, ...]]:
    """(bench, check, value, target, result) rows of one result file, whichever bench wrote it."""
    if "checks" in document:
        return [
            (
                name,
                c["name"],
                math.nan if c["value"] is None else c["value"],
                f"{c['op']} {c['target']:g}",
                "[green]pass[/]" if c["passed"] else "[red]short[/]",
            )
            for c in document["checks"]
        ]
    rows = []
    for alg, result in document.get("results", {}).items():
        if "target" not in result:
            continue
        ours = result["implementations"].get(OURS.get(name, ""), {})
        ratio = ours.get("ratio_to_raw", math.nan)
        verdict = "[green]pass[/]" if result.get("meets_target") else "[red]short[/]"
        rows.append(
            (
                name,
                f"{alg}: {OURS.get(name, 'ours')} / raw cryptography",
                ratio,
                f">= {result['target']:g}",
                verdict,
            )
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every bench in its tiny smoke mode")
    parser.add_argument("--only", nargs="+", choices=BENCHES, default=list(BENCHES))
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    status: dict[str, str] = {}
    for name in args.only:
        print(f"\n=== bench_{name} ===", flush=True)
        start = time.monotonic()
        code = subprocess.run(command(name, args.quick, args.results), cwd=ROOT, check=False).returncode
        status[name] = f"exit {code}, {time.monotonic() - start:.0f} s"
    rows: list[tuple[Any, ...]] = []
    for name in args.only:
        where = (RESULTS if name in OWN_RESULTS else args.results) / f"{name}.json"
        if not where.is_file():
            rows.append((name, f"no results ({status[name]})", math.nan, "-", "[red]missing[/]"))
            continue
        rows += summary_rows(name, json.loads(where.read_text()))
    print()
    print_table(
        "all benchmarks against the targets of issue 7",
        ("bench", "check", "value", "target", "result"),
        rows,
        left=2,
    )
    for name, outcome in status.items():
        print(f"  bench_{name}: {outcome}")
    return 0 if all(s.startswith("exit 0") for s in status.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
