"""Bounded retries with exponential backoff and full jitter for calls to the issuer."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

Backoff = Callable[[int], float]
Sleep = Callable[[float], Awaitable[None]]

# Errors raised before a single byte of the request left: the issuer cannot have acted on it.
NOT_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)

# 5xx statuses after which the request may have been processed (a proxy lost the backend's answer).
IN_DOUBT_STATUSES = frozenset({502, 504})


def full_jitter(base: float = 0.2, cap: float = 2.0) -> Backoff:
    """Delay before retry `attempt` (1-based): uniform in [0, min(cap, base * 2**(attempt-1))]."""

    def delay(attempt: int) -> float:
        return random.uniform(0.0, min(cap, base * 2 ** (attempt - 1)))  # noqa: S311 - jitter, not a secret

    return delay


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a failed issuer call."""

    attempts: int = 3  # total tries, the first one included
    timeout: float = 5.0  # per try, connect and read
    backoff: Backoff = field(default_factory=full_jitter)
