"""A replay cache that reports the outcome of every check, for the services' metrics."""

from __future__ import annotations

from collections.abc import Callable

from keys._errors import ReplayUnavailable
from keys._replay._cache import ReplayCache

Observe = Callable[[str, str], None]
"""Called with the key and `first`, `replayed` or `unavailable`."""


class ObservedReplayCache:
    """A `keys.ReplayCache` around another that tells `observe` how each `first_use` ended."""

    def __init__(self, inner: ReplayCache, observe: Observe) -> None:
        self._inner = inner
        self._observe = observe

    async def first_use(self, key: str, expires_at: float) -> bool:
        try:
            first = await self._inner.first_use(key, expires_at)
        except ReplayUnavailable:
            self._observe(key, "unavailable")
            raise
        self._observe(key, "first" if first else "replayed")
        return first
