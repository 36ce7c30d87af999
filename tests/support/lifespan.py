"""Running an ASGI app's lifespan around a test, as a server would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

from starlette.applications import Starlette

App = TypeVar("App", bound=Starlette)  # FastAPI apps are Starlette apps


@asynccontextmanager
async def running(app: App) -> AsyncIterator[App]:
    """Run the app's lifespan in a task of its own (anyio scopes must exit in the task they entered).

    A startup failure is raised here, before the test body runs.
    """
    started, stop = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with app.router.lifespan_context(app):
            started.set()
            await stop.wait()

    task = asyncio.create_task(run())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if not started.is_set():
        waiter.cancel()
        await task  # raises the startup error
    try:
        yield app
    finally:
        stop.set()
        await task
