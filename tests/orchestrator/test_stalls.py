"""The stall watch of a serving process: a late wake-up is one warning, naming the collections in it."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from orchestrator._stalls import STALL_THRESHOLD, StallWatch
from tests.support.stalls import Script

LOG = logging.getLogger("test.stalls")


async def watch(script: Script, **kwargs: float) -> None:
    stalls = StallWatch(LOG, clock=script.clock, sleep=script.sleep, **kwargs)
    with pytest.raises(asyncio.CancelledError):
        await stalls.run()


async def test_a_late_wake_up_is_one_warning_and_an_on_time_one_is_silent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOG.name)
    await watch(Script([0.0, 0.002, 0.25, 0.099, 0.1]), threshold=0.1, interval=0.05)
    assert [r.getMessage() for r in caplog.records] == [
        "event loop stalled 250 ms",
        "event loop stalled 100 ms",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


async def test_a_stall_names_the_garbage_collection_that_ran_in_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOG.name)
    # A full collection of 0.18 s during the second sleep, which woke 0.2 s late; one in the fourth sleep,
    # which woke on time, is not reported, nor carried over into the next stall.
    script = Script([0.0, 0.2, 0.0, 0.0, 0.3], collect_at=frozenset({1, 3}), gc_seconds=0.18)
    await watch(script, threshold=0.1, interval=0.05)
    assert [r.getMessage() for r in caplog.records] == [
        "event loop stalled 200 ms (garbage collection 180 ms, up to generation 2)",
        "event loop stalled 300 ms",
    ]


async def test_the_watch_leaves_no_collection_callback_behind() -> None:
    before = list(gc.callbacks)
    await watch(Script([0.0]), threshold=STALL_THRESHOLD)
    assert gc.callbacks == before
