"""Telling the operator when a serving process stopped serving: its event loop woke late, and why.

A stalled event loop delays every request in flight at once, a tail no single request explains: a long
garbage collection, a CPU-bound call on the loop, a starved machine. `StallWatch` wakes every `interval`
and logs one warning per stall of at least `threshold`, naming the garbage collections that ran in it, so a
tail seen from outside (the soak, a dashboard) can be pinned on this process, or cleared of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

__all__ = ["STALL_THRESHOLD", "StallWatch"]

STALL_THRESHOLD = 0.1
"""Seconds: a request waiting this long on a busy loop is already slower than the slowest tool call."""
_INTERVAL = 0.05


class StallWatch:
    """Wakes every `interval` seconds; a wake-up `threshold` or more late is logged as a stall.

    A stall is seen when the loop runs again, so its length is measured from the planned wake-up: a stall
    that began mid-sleep reads up to `interval` shorter than it was.
    """

    def __init__(
        self,
        log: logging.Logger,
        *,
        threshold: float = STALL_THRESHOLD,
        interval: float = _INTERVAL,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._log = log
        self._threshold = threshold
        self._interval = interval
        self._clock = clock
        self._sleep = sleep
        self._collecting_since: float | None = None
        self._collected = 0.0  # seconds of garbage collection since the last wake-up
        self._generation = -1  # the oldest generation collected since then

    async def run(self) -> None:
        """Watch until cancelled."""
        with self._timing_collections():
            while True:
                planned = self._clock() + self._interval
                await self._sleep(self._interval)
                self._woke(self._clock() - planned)

    def _woke(self, late: float) -> None:
        collected, generation = self._collected, self._generation
        self._collected, self._generation = 0.0, -1
        if late < self._threshold:
            return
        if collected:
            self._log.warning(
                "event loop stalled %.0f ms (garbage collection %.0f ms, up to generation %d)",
                late * 1000,
                collected * 1000,
                generation,
            )
        else:
            self._log.warning("event loop stalled %.0f ms", late * 1000)

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._collecting_since = self._clock()
        elif self._collecting_since is not None:
            self._collected += self._clock() - self._collecting_since
            self._generation = max(self._generation, info.get("generation", -1))
            self._collecting_since = None

    @contextlib.contextmanager
    def _timing_collections(self) -> Iterator[None]:
        gc.callbacks.append(self._on_collection)
        try:
            yield
        finally:
            gc.callbacks.remove(self._on_collection)
