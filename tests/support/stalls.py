"""A scripted clock and sleep for `orchestrator._stalls.StallWatch`: stalls without waiting for any."""

from __future__ import annotations

import asyncio
import gc


class Script:
    """A clock and a sleep for the watch: each sleep lasts its interval plus the next scripted lateness,
    and may run a real garbage collection meanwhile that takes `gc_seconds` of this clock; the sleep after
    the last lateness ends the watch."""

    def __init__(self, late: list[float], collect_at: frozenset[int] = frozenset(), gc_seconds: float = 0.0):
        self.now = 1000.0
        self._late = list(late)
        self._collect_at = collect_at
        self._gc_seconds = gc_seconds
        self._sleeps = 0
        self._in_collection = False

    def clock(self) -> float:
        return self.now

    def on_collection(self, phase: str, _info: dict[str, int]) -> None:
        # The collection takes `gc_seconds` of the fake clock (the real one is never read).
        if phase == "stop" and self._in_collection:
            self.now += self._gc_seconds

    async def sleep(self, interval: float) -> None:
        if not self._late:
            raise asyncio.CancelledError
        late = self._late.pop(0)
        woke = self.now + interval + late  # a collection during the sleep is part of its lateness
        if self._sleeps in self._collect_at:
            self._in_collection = True
            gc.callbacks.insert(0, self.on_collection)  # before the watch's: it reads the clock after this
            try:
                gc.collect()
            finally:
                gc.callbacks.remove(self.on_collection)
                self._in_collection = False
        self._sleeps += 1
        self.now = woke
