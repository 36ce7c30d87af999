"""The in-process replay cache of one process: a dict for lookups and a heap of expiries for pruning."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable

from keys._clock import wall_clock
from keys._errors import ReplayUnavailable

DEFAULT_MAX_ENTRIES = 100_000


class MemoryReplayCache:
    """A `keys.ReplayCache` for one process; bounded, and closed rather than forgetful when full.

    Each use first pops the identifiers that expired (the heap's front), so pruning is incremental: an
    entry is pushed and popped once, and no use rebuilds the table. When every remembered identifier is
    still live and the table is full, a new one is refused with `ReplayUnavailable`, never let through.
    """

    def __init__(
        self, *, clock: Callable[[], float] = wall_clock, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self._clock = clock
        self._max_entries = max_entries
        self._expires: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        # Callers on other threads (a sync verifier in a worker thread) share the cache safely.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expires)

    async def first_use(self, key: str, expires_at: float) -> bool:
        now = self._clock()
        with self._lock:
            self._prune(now)
            if key in self._expires:
                return False  # after pruning, every remembered key is live
            if len(self._expires) >= self._max_entries:
                raise ReplayUnavailable("the replay cache is full of live identifiers")
            self._expires[key] = expires_at
            heapq.heappush(self._heap, (expires_at, key))
            return True

    def _prune(self, now: float) -> None:
        heap, expires = self._heap, self._expires
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            del expires[key]  # the heap and the table hold the same keys: a key is in both or neither
