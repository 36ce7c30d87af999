"""One call's lifecycle: identify the caller, record the session, build the bank, run the agent, close."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from livekit.agents import Agent, AgentSession
from opentelemetry import trace

from orchestrator._agent._banking_agent import BankingAgent, CallState
from orchestrator._agent._speech import CANNOT_VERIFY, speakable_error
from orchestrator._bank._protocol import Bank, BankError
from orchestrator._call._identity import CallerIdentity, IdentityRefused, parse_identity
from orchestrator._call._session_store import SessionRecord, SessionStore, grant_digest
from orchestrator._tracing import tracer

__all__ = ["AgentWiring", "BankFactory", "OnEnd", "VoiceCall"]

log = logging.getLogger(__name__)

BankFactory = Callable[[CallerIdentity], Awaitable[Bank]]
"""Builds the call's `Bank` (the token half's `McpBank`: exchanges the grant); may raise `BankError`."""

OnEnd = Callable[[CallerIdentity, Bank], Awaitable[None]]
"""Called once when a call that got a bank ends (the token half revokes the refresh family there)."""


@dataclass(frozen=True)
class AgentWiring:
    """What the worker needs besides settings.

    Job processes are started with `forkserver`, so both callables must be picklable: module-level
    functions (or `functools.partial`s of them over picklable arguments), not closures.
    """

    bank_factory: BankFactory
    on_end: OnEnd | None = None


class _FarewellAgent(Agent):
    """Says one sentence and has no tools: used when the call cannot go on."""

    def __init__(self) -> None:
        super().__init__(instructions="You cannot help on this call. Say goodbye politely.", tools=[])


class VoiceCall:
    """Start and end of one call; `end()` is safe to call more than once.

    The call is one trace: its span is current while the call starts (so the agent session's tasks,
    and with them every tool call, run under it) and while it ends; `end()` closes it.
    """

    def __init__(
        self,
        *,
        store: SessionStore,
        bank_factory: BankFactory,
        on_end: OnEnd | None = None,
        clock: Callable[[], float] = time.time,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._store = store
        self._span = tracer(tracer_provider).start_span("voice_call")
        self._bank_factory = bank_factory
        self._on_end = on_end
        self._clock = clock
        self.identity: CallerIdentity | None = None
        self.bank: Bank | None = None
        self.refusal: str | None = None
        """Why the call was refused (an `IdentityRefused` or `BankError` code), or None."""
        self.state: CallState | None = None
        self._ended = False

    async def start(
        self,
        session: AgentSession[CallState],
        metadata: str | None,
        *,
        room_name: str | None = None,
        **start_options: Any,
    ) -> bool:
        """Run the call's opening; False when the caller was refused (told so, nothing else called)."""
        if room_name is not None:
            self._span.set_attribute("voicebank.sid", room_name)
        with trace.use_span(self._span, end_on_exit=False):
            return await self._start(session, metadata, room_name, start_options)

    async def _start(
        self,
        session: AgentSession[CallState],
        metadata: str | None,
        room_name: str | None,
        start_options: dict[str, Any],
    ) -> bool:
        try:
            identity = parse_identity(metadata, room_name=room_name)
        except IdentityRefused as err:
            log.warning("caller refused: %s", err.code)
            self.refusal = err.code
            await self._farewell(session, CANNOT_VERIFY, start_options)
            return False
        self.identity = identity
        await self._store.open(
            SessionRecord(
                session_id=identity.session_id,
                user_id=identity.user_id,
                started_at=self._clock(),
                grant_sha256=grant_digest(identity.session_grant),
            )
        )
        try:
            self.bank = await self._bank_factory(identity)
        except BankError as err:
            log.warning("bank unavailable for the call: %s", err.code)
            self.refusal = err.code
            await self._farewell(session, speakable_error(err), start_options)
            return False
        self.state = session.userdata = CallState(identity=identity)
        await session.start(BankingAgent(self.bank), **start_options)
        return True

    async def _farewell(
        self, session: AgentSession[CallState], sentence: str, start_options: dict[str, Any]
    ) -> None:
        await session.start(_FarewellAgent(), **start_options)
        await session.say(sentence, allow_interruptions=False)

    async def end(self) -> None:
        """Cancel pending approvals, close the session record, hand the bank to `on_end`; end the trace."""
        if self._ended:
            return
        self._ended = True
        try:
            with trace.use_span(self._span, end_on_exit=False):
                await self._end()
        finally:
            self._span.end()

    async def _end(self) -> None:
        if self.state is not None:
            # Hanging up cancels every payment still waiting for the caller's approval.
            await self.state.approvals.cancel()
        if self.identity is None:
            return
        try:
            await self._store.close(self.identity.session_id)
        finally:
            if self.bank is not None and self._on_end is not None:
                await self._on_end(self.identity, self.bank)
