"""uvicorn servers sharing one event loop and one set of signal handlers (`voicebank up`, the tests)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator, Sequence

import uvicorn
from fastapi import FastAPI

from issuer import IssuerSettings, create_app, reload_clients
from orchestrator._tracing import tracer_provider


class SharedLoopServer(uvicorn.Server):
    """A uvicorn server that leaves signals to `serve_all`, so several can share one loop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def issuer_server(settings: IssuerSettings, *, host: str, port: int) -> uvicorn.Server:
    tracing = tracer_provider("voicebank-issuer", settings.otel_exporter_otlp_endpoint)
    app = create_app(settings, tracer_provider=tracing)
    config = uvicorn.Config(app, host=host, port=port, log_level="info", lifespan="on")
    return SharedLoopServer(config)


async def serve_all(servers: Sequence[uvicorn.Server]) -> None:
    """Run servers together; SIGINT/SIGTERM stop them all (a second SIGINT forces); SIGHUP makes every
    issuer among them reload its clients file."""
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

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    loop.add_signal_handler(signal.SIGHUP, hangup)
    try:
        await asyncio.gather(*(server.serve() for server in servers))
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
