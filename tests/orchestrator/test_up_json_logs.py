"""`LOG_FORMAT=json` on a real `voicebank up`: one JSON object per log line, with the trace it ran under."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from issuer import IssuerSettings
from orchestrator._commands._dev_init import dev_init
from tests.support.ports import free_port
from tests.support.process import Output, Serving, child_env, voicebank

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Output]]:
    state = tmp_path_factory.mktemp("up-json") / "state"
    dev_init(IssuerSettings(voicebank_state=state), out=lambda _: None)
    port = free_port()
    env = child_env(LOG_FORMAT="json", ISSUER_METRICS_PORT=str(free_port()))
    serving = Serving(
        voicebank("up", "--only", "issuer", "--state", str(state), "--issuer-port", str(port)), env, 1
    )
    try:
        yield f"http://127.0.0.1:{port}", serving.output
    finally:
        code = serving.stop()
    assert code == 0


def records(output: Output) -> list[dict[str, Any]]:
    """Every log record of the output; the CLI's own `voicebank up:` lines are not log records."""
    parsed = []
    for line in output.text().decode().splitlines():
        if line.startswith("voicebank up: "):
            continue
        record = json.loads(line)
        assert isinstance(record, dict), line
        parsed.append(record)
    return parsed


def test_every_log_line_is_one_json_object_with_the_fields(issuer: tuple[str, Output]) -> None:
    url, output = issuer
    with httpx.Client() as http:
        assert http.get(f"{url}/%00%1b[2J%e2%80%aeevil").status_code == 404
    output.has(b"not_found (no_route)")
    # The access line is written after the error line and may reach the reader thread later: wait for it too.
    output.has(b'"logger":"uvicorn.access"')
    found = records(output)
    assert {r["logger"] for r in found} >= {"uvicorn.error", "uvicorn.access", "issuer.errors"}
    assert all(set(r) >= {"time", "level", "logger", "message", "trace_id"} for r in found)
    text = output.text()
    assert not re.search(rb"[\x00-\x09\x0b-\x1f\x7f]", text)  # no raw control character, no colour
    assert "\u202e".encode() not in text
    (refused,) = [r for r in found if r["logger"] == "issuer.errors" and "evil" in r["message"]]
    assert "\x00\x1b[2J\u202eevil" in refused["message"]  # the client's text, kept, only escaped


def test_records_written_in_a_request_carry_its_trace_id(issuer: tuple[str, Output]) -> None:
    url, output = issuer
    with httpx.Client() as http:
        form = {"grant_type": "client_credentials"}
        answer = http.post(f"{url}/token", data=form, headers={"traceparent": TRACEPARENT})
    assert answer.status_code == 401
    output.has(b'\\"reason\\":\\"no_client_auth\\"')
    found = records(output)
    (audit,) = [r for r in found if r["logger"] == "voicebank.audit" and r["trace_id"] == TRACE_ID]
    line = json.loads(audit["message"])
    assert (line["event"], line["outcome"], line["trace_id"]) == (
        "token.client_credentials",
        "refused",
        TRACE_ID,
    )
    assert any(r["logger"] == "issuer.errors" and r["trace_id"] == TRACE_ID for r in found)
