"""One voice call on the real processes: its issuer and MCP audit lines share the call's trace id."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
from livekit.agents import AgentSession
from opentelemetry.sdk.trace import TracerProvider

from orchestrator._agent._banking_agent import CallState
from orchestrator._call._session_store import MemorySessionStore
from orchestrator._call._voice_call import VoiceCall
from orchestrator._call._wiring import ConnectionSettings, close_bank, open_bank
from orchestrator._commands._demo._scripted_llm import ScriptedLLM, call
from tests.support.e2e import Child, Stack, eventually, issuer_client, new_call

pytestmark = pytest.mark.e2e


def audit_lines(children: list[Child]) -> list[dict[str, Any]]:
    """Every audit line the children wrote, parsed: the e2e services log JSON (`VOICEBANK_MODE=prod`)."""
    lines = []
    for child in children:
        for text in child.output().splitlines():
            if not text.startswith("{"):
                continue  # the harness's own start markers, `voicebank up:` lines
            record = json.loads(text)
            if record["logger"] == "voicebank.audit":
                audit = json.loads(record["message"])
                assert audit["trace_id"] == record["trace_id"]  # the log line and its audit line agree
                lines.append(audit)
    return lines


async def test_a_voice_call_leaves_issuer_and_mcp_audit_lines_under_one_trace_id(stack: Stack) -> None:
    backend_http, _ = issuer_client(stack, target=0)
    async with backend_http:
        identity = await new_call(backend_http, stack)
    settings = ConnectionSettings(
        issuer_url=stack.issuer,
        mcp_url=stack.mcp_urls[0],
        orchestrator_client_id="orchestrator",
        orchestrator_client_key=None,
        voicebank_state=stack.state,
    )
    # The production wiring, as the worker builds it; the call's trace comes from this provider.
    voice_call = VoiceCall(
        store=MemorySessionStore(),
        bank_factory=functools.partial(open_bank, settings),
        on_end=close_bank,
        tracer_provider=TracerProvider(),
    )
    metadata = json.dumps(
        {"user_id": "alice", "session_id": identity.session_id, "session_grant": identity.session_grant}
    )
    scripted = ScriptedLLM([[call("get_balance", "c1")], "Here it is."])
    async with AgentSession[CallState](llm=scripted) as session:
        assert await voice_call.start(session, metadata, room_name=identity.session_id)
        result = await session.run(user_input="What is my balance?")
        result.expect[1].is_function_call_output(is_error=False)
    await voice_call.end()

    expected = {("issuer", "token.exchange"), ("mcp", "get_balance"), ("issuer", "revoke")}

    def call_lines() -> list[dict[str, Any]]:
        """The call's lines: everything about this session except the app backend opening it."""
        return [
            line
            for line in audit_lines(stack.issuers + stack.mcps)
            if line.get("sid") == identity.session_id and line.get("event") != "sessions.create"
        ]

    def seen(lines: list[dict[str, Any]]) -> set[tuple[Any, Any]]:
        return {(line["service"], line.get("event") or line.get("tool")) for line in lines}

    async def all_written() -> bool:
        # The children's output reaches their log files through a reader thread: wait for it (bounded).
        return expected <= seen(call_lines())

    await eventually(all_written)
    lines = call_lines()
    trace_ids = {line["trace_id"] for line in lines}
    assert expected <= seen(lines), lines
    assert len(trace_ids) == 1, lines
    (trace_id,) = trace_ids
    assert trace_id is not None
    assert len(trace_id) == 32
