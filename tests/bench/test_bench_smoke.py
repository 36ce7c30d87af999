"""Every benchmark runs in its `--quick` mode and writes its JSON: the shape is checked, never the speed."""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import logging
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from orchestrator._logs import TextFormatter
from orchestrator._stalls import StallWatch
from tests.support.stalls import Script

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

FIGURES = {
    "mcp_call": {"mcp reused", "raw reused", "raw fresh", "rounds", "slice_seconds"},
    "agent_call": {"agent", "raw", "p50_agent_over_raw", "server_cpu_agent_over_raw"},
    "token_endpoint": {
        "bare",
        "client_credentials",
        "refresh",
        "exchange",
        "connections",
        "generator_headroom_on_bare",
        "floors",
    },
    "families": {"memory exchange", "memory refresh", "families", "generator"},
    "soak": {"memory", "minutes", "concurrent_calls"},
    "jwks_storm": {
        "jwks_fetches_on_wire",
        "jwks_fetches_allowed",
        "valid_calm",
        "valid_storm",
        "valid_latency_ratio_storm_to_calm",
        "storm_tokens",
    },
    "rotation": {"rotations", "calls_ok", "calls_failed", "failures", "latency"},
    "hostile_input": {"cases", "victim", "rounds", "block"},
    "session": {
        "tool_calls",
        "token_requests",
        "token_requests_minimum",
        "token_requests_per_hour",
        "jwks_requests",
        "jwks_requests_minimum",
        "payments_below_threshold_issuer_requests",
        "payments_above_threshold",
    },
}


def bench(name: str) -> ModuleType:
    return importlib.import_module(f"bench_{name}")


def run_quick(name: str, results: Path) -> dict[str, Any]:
    bench(name).main(["--quick", "--results", str(results)])
    document: dict[str, Any] = json.loads((results / f"{name}.json").read_text())
    return document


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_bench_quick_run_writes_its_json(name: str, tmp_path: Path) -> None:
    document = run_quick(name, tmp_path)
    assert document["benchmark"] == name
    assert document["quick"] is True
    assert FIGURES[name] <= document["figures"].keys()
    assert document["checks"]
    for check in document["checks"]:
        assert {"name", "value", "target", "op", "passed"} <= check.keys()
        assert check["op"] in ("<=", ">=", "==")
        assert isinstance(check["passed"], bool)
    if name == "soak":
        # Speed is never asserted, but a simulated call that raises is a broken bench (a payment once went
        # through an outdated McpBank signature and only showed up as "failed calls" in a 10-minute run).
        memory = document["figures"]["memory"]
        assert memory["calls_failed"] == 0, memory["failures"]
        assert memory["operations"].get("make_payment", 0) >= 1
        # Which operation a tail is in, and whose CPU and stalls go with it, minute by minute.
        assert "get_balance" in memory["per_minute_operation"]["0"]
        assert {"issuer_cpu", "mcp_cpu", "generator_cpu"} <= memory["cpu_share_per_minute"]["0"].keys()
        # The calls ran in separate generator processes, each with its own CPU figure and stall records.
        assert document["figures"]["generator_processes"] == 2
        assert {"generator0_cpu", "generator1_cpu"} <= memory["cpu_share_per_minute"]["0"].keys()
        assert all(stall["generator"] in (0, 1) for stall in memory["generator_stalls"])
        assert all(stall["service"] in ("issuer", "mcp") for stall in memory["server_stalls"])
        assert gc.get_freeze_count() == 0  # the bench left this process's heap as it found it


async def test_the_soak_reads_the_stalls_a_service_logged(tmp_path: Path) -> None:
    """The soak's parser and `voicebank up`'s stall lines agree: written by the real formatter, read back."""
    log = tmp_path / "mcp.log"
    handler = logging.FileHandler(log)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("voicebank.up.test-soak")
    logger.addHandler(handler)
    logger.propagate = False
    script = Script([0.25, 0.0, 0.2], collect_at=frozenset({2}), gc_seconds=0.15)
    started = time.time()
    try:
        with pytest.raises(asyncio.CancelledError):
            await StallWatch(logger, clock=script.clock, sleep=script.sleep, interval=0.05).run()
    finally:
        logger.removeHandler(handler)
        handler.close()
    stalls = bench("soak").logged_stalls(log, started - 5)
    assert [(s["ms"], s["gc_ms"]) for s in stalls] == [(250, 0), (200, 150)]
    assert all(4 <= s["t"] <= 60 for s in stalls)  # the line's wall-clock time, from the soak's start


def test_the_session_bench_counts_the_orchestrators_issuer_traffic(tmp_path: Path) -> None:
    """Ten simulated minutes: one exchange, then a refresh at 240 s and 480 s; the MCP calls all succeed."""
    figures = run_quick("session", tmp_path)["figures"]
    assert figures["tool_calls"] == 30
    assert figures["failed_calls"] == 0
    assert figures["token_requests_minimum"] == 3
    assert figures["token_requests"] >= figures["token_requests_minimum"]


def test_the_session_bench_counts_the_issuer_requests_of_each_payment(tmp_path: Path) -> None:
    """Below the threshold one request a payment; above it the polls stay within the approval time."""
    figures = run_quick("session", tmp_path)["figures"]
    assert figures["payments_below_threshold_issuer_requests"] == [1] * 10
    for payment in figures["payments_above_threshold"]:
        assert payment["issuer_requests"] == payment["polls"] + 2  # interaction_required, /bc-authorize
        assert payment["polls"] <= payment["approval_seconds"] / 2 + 1


def test_percentile_interpolates_between_ranks() -> None:
    common = importlib.import_module("_common")
    assert common.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert common.percentile([5.0], 99) == 5.0
    assert common.percentile(list(range(101)), 99) == 99


def test_run_all_summarises_both_result_formats() -> None:
    run_all = importlib.import_module("run_all")
    ours = {"checks": [{"name": "x", "value": 0.9, "target": 0.5, "op": ">=", "passed": True}]}
    theirs = {
        "results": {
            "ES256": {
                "target": 0.85,
                "meets_target": False,
                "implementations": {"keys.Verifier (StaticKeys)": {"ratio_to_raw": 0.8}},
            }
        }
    }
    assert run_all.summary_rows("mcp_call", ours)[0][:4] == ("mcp_call", "x", 0.9, ">= 0.5")
    row = run_all.summary_rows("verify", theirs)[0]
    assert row[2] == 0.8
    assert "short" in row[4]


def test_mcp_call_measures_dpop_beside_bearer_and_off(tmp_path: Path) -> None:
    document = run_quick("mcp_call", tmp_path)
    for mode in ("mcp reused", "raw reused", "raw fresh"):
        dpop = document["figures"][mode]["dpop"]
        assert {"ratio_to_off", "ratio_to_bearer"} <= dpop.keys()
        assert {"median", "min", "max", "rounds"} <= dpop["ratio_to_off"]["concurrent_throughput"].keys()
    names = [check["name"] for check in document["checks"]]
    assert "mcp reused: seq median latency, DPoP auth/off" in names
    assert "raw fresh: 16 conc throughput, DPoP auth/off" in names
    # The raw modes' load generator runs outside the bench process and is checked not to be the bottleneck.
    assert "raw fresh: generator headroom, 16 conc on off" in names
    assert document["figures"]["raw fresh"]["off"]["generator_headroom_concurrent"]["median"] > 0


def test_verify_times_the_dpop_check_against_raw_signatures() -> None:
    impls = bench("verify").dpop_implementations("EdDSA")
    assert set(impls) == {
        "raw cryptography",
        "keys.DPoPVerifier.check",
        "keys.DPoPVerifier.verify (memory replay)",
    }
    for _ in range(2100):  # past one lap over the distinct proofs: a new replay cache, nothing refused
        impls["keys.DPoPVerifier.verify (memory replay)"]()


def test_a_bench_server_logs_as_voicebank_up_does(tmp_path: Path) -> None:
    """Access lines through our formatter without the query string, as production writes them."""
    common = importlib.import_module("_common")
    world = importlib.import_module("_world")
    state = world.write_issuer_state(tmp_path, world.client_keys())
    server = common.ServerProcess("issuer", "--state", str(state))
    with common.running(server):
        assert httpx.get(f"{server.base}/healthz?access_token=secret-value").status_code == 200
        assert server.log_file is not None
        log = server.log_file.read_text()
    access = [line for line in log.splitlines() if " INFO uvicorn.access " in line]
    assert any('"GET /healthz HTTP/1.1" 200' in line for line in access), log
    assert "secret-value" not in log
    assert "\x1b[" not in log  # uvicorn's coloured console is not in use
