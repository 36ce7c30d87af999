"""The default clock of the verifier and the JWKS cache."""

from __future__ import annotations

import time


def wall_clock() -> float:
    """time.time looked up per call, so freezegun also moves objects built before it started."""
    return time.time()
