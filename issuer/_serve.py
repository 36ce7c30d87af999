"""`voicebank up`: uvicorn servers sharing one event loop and one set of signal handlers."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import Iterator, Sequence

import redis.asyncio as aioredis
import uvicorn
from redis.exceptions import RedisError

from issuer._app import create_app
from issuer._build import IssuerStartupError, key_store, load_registry
from issuer._settings import IssuerSettings
from keys import KeyRingError


class ServeError(Exception):
    """A server stopped while starting (its port was taken, its lifespan failed); uvicorn logged why."""


class SharedLoopServer(uvicorn.Server):
    """A uvicorn server that leaves signals to `serve_all`, so several can share one loop.

    `sockets`, when given, are already bound and listening: the server takes them over.
    """

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket] | None = None) -> None:
        super().__init__(config)
        self.sockets = sockets

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        await super().serve(sockets or self.sockets)


def issuer_server(settings: IssuerSettings, *, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(settings), host=host, port=port, log_level="info", log_config=None, lifespan="on"
    )
    return SharedLoopServer(config)


async def serve_all(servers: Sequence[uvicorn.Server]) -> None:
    """Run servers together; SIGINT/SIGTERM stop them all (a second SIGINT forces)."""
    loop = asyncio.get_running_loop()

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
    try:
        # Every server finishes its shutdown before a failure is raised.
        outcomes = await asyncio.gather(*(serve(server) for server in servers), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def preflight(settings: IssuerSettings) -> None:
    """Fail before serving, with one line, on what the lifespan would fail on."""
    load_registry(settings)
    asyncio.run(_load_ring(settings))


async def _load_ring(settings: IssuerSettings) -> None:
    redis = (
        aioredis.Redis.from_url(settings.redis_url)
        if settings.keys_store == "redis" and settings.redis_url
        else None
    )
    try:
        await key_store(settings, redis).load(time.time())
    except KeyRingError as exc:
        raise IssuerStartupError(f"cannot load the issuer key ring: {exc}") from None
    except RedisError as exc:
        raise IssuerStartupError(
            f"cannot reach Redis at REDIS_URL ({type(exc).__name__}): KEYS_STORE=redis keeps the keys there"
        ) from None
    finally:
        if redis is not None:
            await redis.aclose()


def up(settings: IssuerSettings, *, host: str, port: int) -> None:
    """Serve the issuer until interrupted (the lead adds the MCP server to the same list)."""
    preflight(settings)
    asyncio.run(serve_all([issuer_server(settings, host=host, port=port)]))
