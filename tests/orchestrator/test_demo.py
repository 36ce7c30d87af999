"""`voicebank demo` end to end: real issuer and MCP processes, the real orchestrator code, a scripted LLM."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from orchestrator._commands._demo._run import DemoOptions, run_demo

pytestmark = pytest.mark.e2e


def test_demo_runs_every_step_and_exits_zero(tmp_path: Path) -> None:
    console = Console(record=True, width=200, highlight=False)
    state = tmp_path / "state"

    status = run_demo(DemoOptions(state=state, issuer_port=0, mcp_port=0), console)

    out = console.export_text()
    assert status == 0, out
    for line in (
        "Session created",
        "Grant exchanged",
        "PII masked before the LLM",
        "Payment completed under a single-use transact token",
        "The spent transact token is refused on reuse",
        "Above the threshold: the agent says the payment waits for the caller's approval",
        "Approval requested in the caller's app (CIBA /bc-authorize)",
        "The banking app shows the request",
        "Approved in the app, then paid with a token bound to exactly that payment",
        "Declined in the app: the agent says so, and no money moved",
        "The model asked for 2500.00 after the caller confirmed 40.00: refused, said plainly",
        "A token approved for City Power, presented to pay Bob Martin, is refused",
        "Issuer keys rotated through the admin API",
        "The cached read token, signed by the retiring key, still verifies",
        "Read token refreshed ahead of expiry, now signed by the new key, and verified",
        "A forged token (right kid, attacker's key) is refused",
        "A fresh DPoP key for this call, in memory only",
        "A read token lifted from the call, replayed as Bearer, is refused",
        "...and with a DPoP proof by the thief's own key (cnf.jkt names the call's key)",
        "A read token cannot pay",
        "Refresh-token family revoked",
        "The last refresh token is refused after the call",
        "demo finished",
    ):
        assert line in out
    assert "✗" not in out
    assert "100200301234" not in out  # the full account number never shows
    # Tokens never reach the output: no JWT-shaped string.
    assert "eyJ" not in out
    # A given state directory is kept, with the logs of both processes.
    assert (state / "issuer.log").is_file()
    assert (state / "mcp.log").is_file()


def test_demo_with_a_broken_state_directory_fails_clearly(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "keys").mkdir(parents=True)
    (state / "keys" / "keyring.json").write_text("{not json")
    console = Console(record=True, width=200, highlight=False)

    assert run_demo(DemoOptions(state=state), console) == 1

    out = console.export_text()
    assert "voicebank demo:" in out
    assert "Traceback" not in out
