"""uvicorn servers sharing one event loop and one set of signal handlers (`voicebank up`, the tests)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterator, Sequence

import uvicorn
from fastapi import FastAPI

from issuer import IssuerSettings, create_app, reload_clients
from orchestrator._errors import OrchestratorError
from orchestrator._heap import freeze_startup_heap
from orchestrator._stalls import StallWatch
from orchestrator._tracing import tracer_provider

log = logging.getLogger("voicebank.up")


class ServeError(OrchestratorError):
    """A server stopped while starting (its port was taken, its lifespan failed); uvicorn logged why."""

    code = "serve"


class SharedLoopServer(uvicorn.Server):
    """A uvicorn server that leaves signals to `serve_all`, so several can share one loop.

    `sockets`, when given, are already bound and listening: the server takes them over.
    """

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket] | None = None) -> None:
        super().__init__(config)
        self.sockets = sockets
        self.listening = asyncio.Event()
        """Set once the lifespan has started and the socket accepts connections."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        await super().serve(sockets or self.sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.listening.set()


def issuer_server(settings: IssuerSettings, *, host: str, port: int) -> uvicorn.Server:
    tracing = tracer_provider("voicebank-issuer", settings.otel_exporter_otlp_endpoint)
    app = create_app(settings, tracer_provider=tracing)
    config = uvicorn.Config(app, host=host, port=port, log_level="info", log_config=None, lifespan="on")
    return SharedLoopServer(config)


async def _started(server: uvicorn.Server, serving: asyncio.Task[None]) -> None:
    """Return once `server` listens, or once it stopped trying."""
    if not isinstance(server, SharedLoopServer):
        return
    listening = asyncio.create_task(server.listening.wait())
    await asyncio.wait({serving, listening}, return_when=asyncio.FIRST_COMPLETED)
    listening.cancel()


async def serve_all(servers: Sequence[uvicorn.Server], *, started: Callable[[], None] | None = None) -> None:
    """Run servers together; SIGINT/SIGTERM stop them all (a second SIGINT forces); SIGHUP makes every
    issuer among them reload its clients file.

    They start in order, each once the one before listens: the MCP server's first JWKS fetch from the
    issuer next to it then finds the issuer up. `started` runs once every server listens.
    """
    loop = asyncio.get_running_loop()

    def hangup() -> None:
        for server in servers:
            if isinstance(server.config.app, FastAPI):
                reload_clients(server.config.app)

    def stop() -> None:
        for server in servers:
            if server.should_exit:
                server.force_exit = True
            server.should_exit = True

    async def serve(server: uvicorn.Server) -> None:
        try:
            await server.serve()
        except SystemExit:  # uvicorn exits when it cannot bind or its lifespan fails, after logging why
            stop()
            raise ServeError("a server could not start; the log above says why") from None

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    loop.add_signal_handler(signal.SIGHUP, hangup)
    serving: list[asyncio.Task[None]] = []
    try:
        for server in servers:
            serving.append(asyncio.create_task(serve(server)))
            await _started(server, serving[-1])
            if serving[-1].done():  # it could not start: start no other
                stop()
                break
        else:
            if started is not None:
                started()
        # Every server finishes its shutdown before a failure is raised.
        outcomes = await asyncio.gather(*serving, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def _frozen() -> None:
    log.info("%d startup objects left out of garbage collection", freeze_startup_heap())


async def _serve_watched(servers: Sequence[uvicorn.Server]) -> None:
    watch = asyncio.create_task(StallWatch(log).run())
    try:
        await serve_all(servers, started=_frozen)
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch


def run_all(servers: Sequence[uvicorn.Server]) -> None:
    """`serve_all` on the event loop uvicorn itself would pick (`loop="auto"`: uvloop when installed).

    This process serves from here on: once every server listens, its startup heap is frozen, and a stall of
    its event loop (a long garbage collection, say) is logged as a warning while it serves.
    """
    factory = servers[0].config.get_loop_factory() if servers else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_serve_watched(servers))
