"""A real `voicebank up` process: what its log lines carry and where its metrics are served.

Its stderr is read line by line in a thread; a test waits (bounded) for the line it needs, never sleeps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from issuer import IssuerSettings
from orchestrator._commands._dev_init import dev_init
from tests.support.ports import free_port
from tests.support.process import Output, Serving, child_env, voicebank


@dataclass
class Up:
    issuer: str
    mcp: str
    issuer_metrics: str
    mcp_metrics: str
    output: Output


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    state = tmp_path_factory.mktemp("up") / "state"
    dev_init(IssuerSettings(voicebank_state=state), out=lambda _: None)
    ports = [free_port() for _ in range(4)]
    env = child_env(ISSUER_METRICS_PORT=str(ports[2]), MCP_METRICS_PORT=str(ports[3]))
    args = ["up", "--state", str(state), "--issuer-port", str(ports[0]), "--mcp-port", str(ports[1])]
    serving = Serving(voicebank(*args), env, listeners=2)
    try:
        yield Up(*(f"http://127.0.0.1:{port}" for port in ports), serving.output)
    finally:
        code = serving.stop()
    assert code == 0


def test_regression_access_log_has_no_query_string(up: Up) -> None:
    # A token sent in a query string is refused, and must not reach the log either (issue 10).
    with httpx.Client() as http:
        assert http.post(f"{up.mcp}/mcp?access_token=Q-TOKEN-A", json={}).status_code == 401
        assert http.get(f"{up.issuer}/.well-known/jwks.json?access_token=Q-TOKEN-B").status_code == 200
        assert http.get(f"{up.issuer}/token?client_assertion=Q-TOKEN-C&x=1").status_code == 405
    up.output.has(b'"POST /mcp HTTP/1.1" 401')
    up.output.has(b'"GET /.well-known/jwks.json HTTP/1.1" 200')
    up.output.has(b'"GET /token HTTP/1.1" 405')
    text = b"".join(up.output.lines)
    assert b"Q-TOKEN" not in text
    access = [line for line in up.output.lines if b" uvicorn.access " in line]
    assert access
    assert not [line for line in access if b"?" in line]


def test_regression_client_text_in_log_lines_is_escaped(up: Up) -> None:
    # A path with NUL, ESC (a terminal escape that clears the screen) and a right-to-left override.
    with httpx.Client() as http:
        assert http.get(f"{up.issuer}/%00%1b[2J%e2%80%aeevil").status_code == 404
    up.output.has(b"refused: not_found (no_route)")
    # The line names the request's trace (`trace_id=...`) between the logger and the message.
    (line,) = [
        line
        for line in up.output.lines
        if b" issuer.errors " in line and b" GET /" in line and b"evil" in line
    ]
    assert b"/\\u0000\\u001b[2J\\u202eevil refused" in line
    text = b"".join(up.output.lines)
    assert not re.search(rb"[\x00-\x09\x0b-\x1f\x7f]", text)  # no raw control character, no colour
    assert "\u202e".encode() not in text


def test_regression_metrics_are_not_on_the_public_ports(up: Up) -> None:
    with httpx.Client() as http:
        for base in (up.issuer, up.mcp):
            response = http.get(f"{base}/metrics")
            assert response.status_code == 404, base
            assert b"_total" not in response.content


def test_metrics_listeners_serve_the_counters(up: Up) -> None:
    with httpx.Client() as http:
        assert http.post(f"{up.issuer}/token", data={"grant_type": "client_credentials"}).status_code == 401
        assert http.post(f"{up.mcp}/mcp", json={}).status_code == 401
        issuer = http.get(f"{up.issuer_metrics}/metrics")
        mcp = http.get(f"{up.mcp_metrics}/metrics")
        assert http.get(f"{up.issuer_metrics}/token").status_code == 404  # metrics, nothing else
    assert 'issuer_errors_total{code="invalid_client",reason="no_client_auth"}' in issuer.text
    assert 'voicebank_mcp_token_verifications_total{outcome="rejected",reason="no_token"}' in mcp.text
    up.output.has(f"issuer metrics at {up.issuer_metrics}/metrics".encode())
    up.output.has(f"MCP server metrics at {up.mcp_metrics}/metrics".encode())
