"""`voicebank bench` runs bench/run_all.py from the checkout."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator._commands._cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_runs_a_benchmark_and_writes_its_results() -> None:
    assert main(["bench", "--quick", "--only", "session"]) == 0
    result = json.loads((ROOT / "bench" / "results" / "session.json").read_text())
    assert result["checks"]


def test_bench_with_an_unknown_name_fails() -> None:
    assert main(["bench", "--only", "nope"]) == 2
