"""One voice call is one trace: call → tool → token and MCP spans, joined by the services' server spans."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx2
import pytest
from livekit.agents import AgentSession
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator._agent._banking_agent import CallState
from orchestrator._bank._mcp import McpBank
from orchestrator._bank._protocol import Bank
from orchestrator._call._identity import CallerIdentity
from orchestrator._call._session_store import MemorySessionStore
from orchestrator._call._voice_call import VoiceCall
from orchestrator._commands._demo._scripted_llm import ScriptedLLM, call
from orchestrator._tokens._issuer_client import IssuerClient
from orchestrator._tokens._manager import TokenManager
from orchestrator._tokens._retry import RetryPolicy
from tests.support.issuer import ISSUER, RESOURCE
from tests.support.registry import ALL_SCOPES
from tests.support.stack import Stack, running_stack


def recording() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


class TracedWiring:
    """The production wiring's parts (issuer client, token manager, MCP bank) on one tracer provider."""

    def __init__(self, stack: Stack, provider: TracerProvider) -> None:
        self.stack = stack
        self.provider = provider
        self.banks: list[McpBank] = []

    async def bank_factory(self, identity: CallerIdentity) -> Bank:
        client = IssuerClient(
            self.stack.issuer_http,
            issuer=ISSUER,
            client_id="orchestrator",
            key=self.stack.client_keys["orchestrator"],
            retry=RetryPolicy(attempts=1),
            clock=self.stack.clock,
            tracer_provider=self.provider,
        )
        tokens = TokenManager(client, clock=self.stack.clock)
        await tokens.start(identity.session_grant)
        transport = httpx2.ASGITransport(app=self.stack.mcp_app)
        bank = McpBank(tokens, RESOURCE, transport=transport, tracer_provider=self.provider)
        self.banks.append(bank)
        self.tokens = tokens
        return bank

    async def on_end(self, identity: CallerIdentity, bank: Bank) -> None:
        del identity, bank
        await self.tokens.revoke()


async def open_session(stack: Stack) -> tuple[str, str]:
    bearer = await stack.bearer("backend", "sessions:create")
    response = await stack.issuer_http.post(
        "/sessions",
        json={"user_id": "alice", "scope": ALL_SCOPES},
        headers={"Authorization": f"Bearer {bearer}"},
    )
    body = response.json()
    return body["session_id"], body["session_grant"]


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def named(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    (span,) = [s for s in spans if s.name == name]
    return span


async def test_a_voice_call_is_one_trace_from_call_to_tool_to_token_and_mcp(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voicebank.audit")
    provider, exporter = recording()
    async with running_stack(tmp_path, tracer_provider=provider) as stack:
        wiring = TracedWiring(stack, provider)
        sid, grant = await open_session(stack)
        exporter.clear()  # the app backend's own requests are not part of the call
        caplog.clear()
        voice_call = VoiceCall(
            store=MemorySessionStore(),
            bank_factory=wiring.bank_factory,
            on_end=wiring.on_end,
            tracer_provider=provider,
        )
        metadata = json.dumps({"user_id": "alice", "session_id": sid, "session_grant": grant})
        scripted = ScriptedLLM([[call("update_notification_settings", "c1", channel="sms")], "Done."])
        try:
            async with AgentSession[CallState](llm=scripted) as session:
                assert await voice_call.start(session, metadata, room_name=sid)
                result = await session.run(user_input="Text me alerts.")
                result.expect[1].is_function_call_output(is_error=False)
            await voice_call.end()
        finally:
            for bank in wiring.banks:
                await bank.aclose()

    spans = list(exporter.get_finished_spans())
    root = named(spans, "voice_call")
    assert root.parent is None
    assert root.attributes is not None
    assert root.attributes["voicebank.sid"] == sid
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}

    under_call = {s.name for s in children(spans, root)}
    # The grant exchange when the call starts, the tool call, the revocation when it ends.
    assert {"issuer POST /token", "tool update_notification_settings", "issuer POST /revoke"} <= under_call
    tool = named(spans, "tool update_notification_settings")
    token, mcp = sorted(children(spans, tool), key=lambda s: s.start_time or 0)
    assert (token.name, mcp.name) == ("issuer POST /token", "mcp tools/call update_notification_settings")
    assert [s.name for s in children(spans, token)] == ["POST /token"]  # the issuer's server span
    assert {s.name for s in children(spans, mcp)} == {"POST /mcp"}  # the MCP server's span(s)

    trace_id = format(root.context.trace_id, "032x")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "voicebank.audit"]
    services = {(line["service"], line.get("event") or line.get("tool")) for line in lines}
    assert ("issuer", "token.exchange") in services
    assert ("issuer", "token.refresh") in services
    assert ("issuer", "revoke") in services
    assert ("mcp", "update_notification_settings") in services
    assert {line["trace_id"] for line in lines} == {trace_id}
    # Every audit line of the whole call, both services: no JWT (token, grant, assertion), no refresh token.
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "voicebank.audit")
    assert "eyJ" not in text
    assert grant not in text
