"""The livekit-agents worker: `python -m orchestrator` runs it with a `Bank` factory wired in."""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from livekit import rtc
from livekit.agents import AgentServer, AgentSession, CloseEvent, JobContext, JobProcess
from livekit.agents.voice.room_io import RoomOptions
from pydantic import ValidationError
from redis.asyncio import Redis

from orchestrator._agent._banking_agent import CallState
from orchestrator._call._session_store import MemorySessionStore, RedisSessionStore, SessionStore
from orchestrator._call._settings import AgentSettings, NotConfigured
from orchestrator._call._voice_call import AgentWiring, VoiceCall
from orchestrator._heap import freeze_startup_heap
from orchestrator._logs import LogSettings, adopt_library_loggers, configure_logging
from orchestrator._tracing import install_tracer_provider

__all__ = [
    "SessionFactory",
    "build_server",
    "entrypoint",
    "freeze_job_process",
    "inference_session",
    "main",
    "run_worker",
    "use_our_logging",
]

log = logging.getLogger(__name__)

SessionFactory = Callable[[AgentSettings], AgentSession[CallState]]
"""Builds the agent session of one call (the tests give it a scripted LLM)."""


def inference_session(settings: AgentSettings) -> AgentSession[CallState]:
    """The production session: the LiveKit Inference models the settings name."""
    return AgentSession[CallState](stt=settings.stt or "", llm=settings.llm or "", tts=settings.tts or "")


def _session_store(settings: AgentSettings) -> tuple[SessionStore, Redis | None]:
    if settings.redis_url:
        client = Redis.from_url(settings.redis_url)
        return RedisSessionStore(client), client
    return MemorySessionStore(), None


def _follow_the_caller(
    ctx: JobContext, session: AgentSession[CallState], caller: rtc.RemoteParticipant
) -> None:
    """The call ends with the caller or the session; a metadata change never changes who the agent acts for.

    Ending the job at once runs the shutdown callback, which revokes the call's refresh family.
    """

    def left(participant: rtc.RemoteParticipant) -> None:
        if participant.identity == caller.identity:
            ctx.shutdown(reason="caller left")

    def metadata_changed(participant: rtc.Participant, _old: str, _new: str) -> None:
        if participant.identity == caller.identity:
            log.warning("the caller's metadata changed mid-call; the call keeps the identity it started with")

    def closed(event: CloseEvent) -> None:
        ctx.shutdown(reason=f"session closed: {event.reason.value}")

    ctx.room.on("participant_disconnected", left)
    ctx.room.on("participant_metadata_changed", metadata_changed)
    session.on("close", closed)
    if caller.identity not in ctx.room.remote_participants:  # gone while the grant was being exchanged
        ctx.shutdown(reason="caller left")


async def entrypoint(
    ctx: JobContext,
    *,
    wiring: AgentWiring,
    settings: AgentSettings,
    new_session: SessionFactory = inference_session,
    media: RoomOptions | None = None,
) -> None:
    """One job: connect, wait for the caller, identify them, record the session and run the agent.

    `media` is the room's input and output (default: audio and text both ways).
    """
    # Job processes start fresh: each sets its own global tracer provider once.
    install_tracer_provider("voicebank-agent", settings.otel_exporter_otlp_endpoint)
    store, redis_client = _session_store(settings)
    call = VoiceCall(store=store, bank_factory=wiring.bank_factory, on_end=wiring.on_end)

    async def close(_reason: str) -> None:
        try:
            await call.end()
        finally:
            if redis_client is not None:
                await redis_client.aclose()

    ctx.add_shutdown_callback(close)
    await ctx.connect()
    participant = await ctx.wait_for_participant()
    session = new_session(settings)
    started = await call.start(
        session,
        participant.metadata,
        room_name=ctx.room.name,
        room=ctx.room,
        room_options=dataclasses.replace(media or RoomOptions(), participant_identity=participant.identity),
        # No session host: no other participant of the room may drive this session or read its history.
        session_host=False,
    )
    if not started:
        # The caller heard why; end the call for everyone rather than leave them in a silent room.
        # The reason first: deleting the room disconnects everyone, which would also end the job.
        ctx.shutdown(reason=f"call refused: {call.refusal}")
        session.shutdown()
        await ctx.delete_room()
        return
    _follow_the_caller(ctx, session, participant)


def freeze_job_process(_proc: JobProcess) -> None:
    """livekit-agents' process setup hook: it runs once in each process that serves calls, before any job.

    On Linux job processes fork from livekit-agents' forkserver, which froze only what it preloaded (the
    framework and its plugins); this process then unpickled the entrypoint, importing the orchestrator,
    the MCP client, the token half and their libraries. Without freezing them, every full collection walks
    that heap while the calls on this process wait (issue 12), as `voicebank up` did before it froze its own.
    """
    log.info("%d startup objects left out of garbage collection", freeze_startup_heap())


def build_server(settings: AgentSettings, wiring: AgentWiring) -> AgentServer:
    """An `AgentServer` for explicitly dispatched calls to `settings.livekit_agent_name`."""
    settings.require()
    secret = settings.livekit_api_secret
    server = AgentServer(
        ws_url=settings.livekit_url,
        api_key=settings.livekit_api_key,
        api_secret=secret.get_secret_value() if secret is not None else None,
        setup_fnc=freeze_job_process,
    )
    server.rtc_session(
        functools.partial(entrypoint, wiring=wiring, settings=settings),
        agent_name=settings.livekit_agent_name,
    )
    return server


def use_our_logging(server: AgentServer, handler: logging.Handler) -> None:
    """Once the worker runs, `handler` (our formatter) is the only one: livekit-agents installs its own
    console handler on the root logger before it starts, and the job processes' records come back
    through the root logger."""
    server.on("worker_started", functools.partial(adopt_library_loggers, handler))


def run_worker(
    settings: AgentSettings,
    wiring: AgentWiring,
    *,
    log_level: str = "INFO",
    log_file: Path | None = None,
    formatter: logging.Formatter | None = None,
) -> None:
    """Run the worker until SIGINT/SIGTERM, with livekit-agents' own signal handling and drain."""
    # The public `cli.run_app` is deprecated and parses sys.argv itself; this is what
    # `python -m livekit.agents start` runs.
    from livekit.agents.cli import proto
    from livekit.agents.cli.cli import _run_worker

    server = build_server(settings, wiring)
    use_our_logging(server, configure_logging(log_level, log_file=log_file, formatter=formatter))
    _run_worker(server, proto.CliArgs(log_level=log_level.upper(), log_format="json"))


def main(
    argv: Sequence[str] | None = None,
    *,
    wiring: AgentWiring | None = None,
    log_level: str = "INFO",
    log_file: Path | None = None,
) -> int:
    """Entry point of `python -m orchestrator`; exit status 2 with a clear message when not configured."""
    del argv  # no options yet: everything comes from the environment
    settings = AgentSettings()
    try:
        settings.require()
        if wiring is None:
            from orchestrator._call._wiring import (  # imports the token half only when run
                ConnectionSettings,
                default_wiring,
            )

            wiring = default_wiring(ConnectionSettings())
    except NotConfigured as err:
        print(f"orchestrator: {err}", file=sys.stderr)
        return 2
    try:
        formatter = LogSettings().formatter()
    except ValidationError as err:
        print(f"orchestrator: invalid setting LOG_FORMAT: {err.errors()[0]['msg']}", file=sys.stderr)
        return 2
    run_worker(settings, wiring, log_level=log_level, log_file=log_file, formatter=formatter)
    return 0
