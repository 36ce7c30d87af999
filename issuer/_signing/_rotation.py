"""The scheduled rotation: every tick, ask the store to rotate if due (one replica wins per period)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from issuer._metrics import IssuerMetrics
from issuer._signing._key_events import KeyEvents
from keys import KeyRing, KeyStore, KeyStoreError

log = logging.getLogger("issuer.rotation")
Sleep = Callable[[float], Awaitable[None]]


class RotationLoop:
    """`tick` does one scheduled step; `run` ticks forever with an injectable sleep (tests drive `tick`)."""

    def __init__(
        self,
        store: KeyStore,
        *,
        clock: Callable[[], float],
        interval: float,
        events: KeyEvents,
        metrics: IssuerMetrics,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._store = store
        self._clock = clock
        self._interval = interval
        self._events = events
        self._metrics = metrics
        self._sleep = sleep

    async def tick(self) -> KeyRing | None:
        """Rotate when due; the new ring when this replica changed it, else None."""
        before = await self._store.current()
        ring = await self._store.rotate_if_due(self._clock())
        self._metrics.observe_ring(ring or await self._store.current())
        if ring is None:
            return None
        for event in await self._events.changed(before, ring):
            if event.type == "rotated":
                self._metrics.rotations.inc()
            log.info("scheduled rotation: %s %s", event.type, event.kid)
        return ring

    async def run(self) -> None:
        while True:
            await self._sleep(self._interval)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except KeyStoreError as exc:
                # An outage of the store (a read-only directory, Redis down): one line, not a traceback.
                log.warning(
                    "scheduled key rotation failed (%s: %s); retrying at the next tick", exc.code, exc
                )
            except Exception:
                # A store outage must not end the schedule: the next tick tries again.
                log.exception("scheduled key rotation failed; retrying at the next tick")
