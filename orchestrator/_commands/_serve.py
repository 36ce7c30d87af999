"""`voicebank up`: uvicorn servers sharing one event loop and one set of signal handlers."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator, Sequence

import uvicorn

from issuer._build import IssuerStartupError, key_store, load_registry
from issuer._http._app import create_app
from issuer._settings import IssuerSettings
from keys import KeyRingError


class SharedLoopServer(uvicorn.Server):
    """A uvicorn server that leaves signals to `serve_all`, so several can share one loop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def issuer_server(settings: IssuerSettings, *, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(create_app(settings), host=host, port=port, log_level="info", lifespan="on")
    return SharedLoopServer(config)


async def serve_all(servers: Sequence[uvicorn.Server]) -> None:
    """Run servers together; SIGINT/SIGTERM stop them all (a second SIGINT forces)."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            if server.should_exit:
                server.force_exit = True
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        await asyncio.gather(*(server.serve() for server in servers))
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def preflight(settings: IssuerSettings) -> None:
    """Fail before serving, with one line, on what the lifespan would fail on."""
    load_registry(settings)
    if settings.keys_store == "file":
        try:
            asyncio.run(key_store(settings, None).load(time.time()))
        except KeyRingError as exc:
            raise IssuerStartupError(f"cannot load the issuer key ring: {exc}") from None


def up(settings: IssuerSettings, *, host: str, port: int) -> None:
    """Serve the issuer until interrupted (the lead adds the MCP server to the same list)."""
    preflight(settings)
    asyncio.run(serve_all([issuer_server(settings, host=host, port=port)]))
