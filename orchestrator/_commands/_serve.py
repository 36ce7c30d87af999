"""uvicorn servers sharing one event loop and one set of signal handlers (`voicebank up`, the tests)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator, Sequence

import uvicorn

from issuer import IssuerSettings, create_app


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
