"""A loopback proxy in front of the real Redis that can lose one answer: the command reaches Redis and runs,
then the connection drops before the reply reaches the client (what a retry can never rule out)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class _Link:
    cut: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class AnswerLosingProxy:
    """Relays bytes both ways; `lose_answer_to(b"EVALSHA")` drops the connection carrying the next such
    command right after Redis answered it, without passing the answer on. `lost` counts the answers lost."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._marker: bytes | None = None
        self._links: list[_Link] = []
        self.lost = 0
        self.url = ""

    def lose_answer_to(self, marker: bytes) -> None:
        self._marker = marker

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[AnswerLosingProxy]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        self.url = f"redis://127.0.0.1:{port}/0"
        try:
            yield self
        finally:
            server.close()
            for link in self._links:
                for task in link.tasks:
                    task.cancel()
            await asyncio.gather(*(t for link in self._links for t in link.tasks), return_exceptions=True)
            await server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        link = _Link()
        self._links.append(link)
        link.tasks = [
            asyncio.create_task(self._to_redis(link, client_r, up_w)),
            asyncio.create_task(self._to_client(link, up_r, client_w, up_w)),
        ]

    async def _to_redis(
        self, link: _Link, client_r: asyncio.StreamReader, up_w: asyncio.StreamWriter
    ) -> None:
        tail = b""  # too short to hold a whole marker: one split across two reads, never an old one
        while chunk := await client_r.read(65536):
            window = tail + chunk
            keep = len(self._marker) - 1 if self._marker else 0
            tail = window[len(window) - keep :] if keep else b""
            if self._marker is not None and self._marker in window:
                # The client waits for this command's answer before it sends another: the next bytes
                # from Redis are that answer.
                self._marker = None
                link.cut = True
            up_w.write(chunk)
            await up_w.drain()
        up_w.close()

    async def _to_client(
        self,
        link: _Link,
        up_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        up_w: asyncio.StreamWriter,
    ) -> None:
        while chunk := await up_r.read(65536):
            if link.cut:
                self.lost += 1
                break
            client_w.write(chunk)
            await client_w.drain()
        client_w.close()
        up_w.close()
