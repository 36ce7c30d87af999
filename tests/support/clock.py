"""The fake clock: every part takes `clock=`, and tests move time by hand instead of sleeping."""

from __future__ import annotations

START = 1_800_000_000.0


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
