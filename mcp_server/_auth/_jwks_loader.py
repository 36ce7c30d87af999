"""The first load of the issuer's JWKS: retried with backoff until it succeeds, so a late issuer is no outage.

Without it a failed first fetch left the cache empty until the unknown-kid refetch (at most once per 5 s)
happened to run, and every valid token was refused meanwhile. While the loader retries, requests get 503
`temporarily_unavailable` and `/readyz` says why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from keys import KeysUnavailable
from mcp_server._auth._denials import RETRY_AFTER_SECONDS

_log = logging.getLogger("voicebank.mcp.jwks")

Sleep = Callable[[float], Awaitable[None]]


class Refreshable(Protocol):
    """What the loader drives: `keys.JWKSCache.refresh`."""

    async def refresh(self) -> None:
        """Fetch now; raise KeysUnavailable if that fails."""
        ...


class JwksLoader:
    """Fetches until the first success, waiting `first_delay`, then twice as long, up to `max_delay`."""

    def __init__(
        self,
        keys: Refreshable,
        *,
        sleep: Sleep = asyncio.sleep,
        first_delay: float = 0.05,
        max_delay: float = RETRY_AFTER_SECONDS,
    ) -> None:
        self._keys = keys
        self._sleep = sleep
        self._first_delay = first_delay
        self._max_delay = max_delay
        self.attempts = 0
        self.tried = asyncio.Event()  # the first attempt is over, whatever its outcome
        self.loaded = asyncio.Event()

    async def run(self) -> None:
        """Return once the JWKS is loaded (run it as a task: it may take as long as the issuer does)."""
        delay = self._first_delay
        while True:
            self.attempts += 1
            try:
                await self._keys.refresh()
            except KeysUnavailable:
                if self.attempts == 1:
                    _log.warning("issuer JWKS not reachable at startup; retrying with backoff")
                self.tried.set()
                await self._sleep(delay)
                delay = min(delay * 2, self._max_delay)
                continue
            if self.attempts > 1:
                _log.info("issuer JWKS loaded after %d attempts", self.attempts)
            self.tried.set()
            self.loaded.set()
            return
