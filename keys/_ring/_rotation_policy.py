"""The timing rules of key rotation, derived from the JWKS max-age, the leeway and the longest token."""

from __future__ import annotations

import math
from dataclasses import dataclass

from keys._timing import CLOCK_LEEWAY, DEFAULT_JWKS_MAX_AGE


@dataclass(frozen=True)
class RotationPolicy:
    """How often keys rotate and how long they are published before and after they sign."""

    period: float = 86400
    jwks_max_age: int = DEFAULT_JWKS_MAX_AGE
    leeway: int = CLOCK_LEEWAY
    max_token_lifetime: int = 600

    def __post_init__(self) -> None:
        if not (math.isfinite(self.period) and self.period > 0):
            raise ValueError("rotation period must be a positive number of seconds")
        if min(self.jwks_max_age, self.leeway, self.max_token_lifetime) < 0:
            raise ValueError("jwks_max_age, leeway and max_token_lifetime must not be negative")

    @property
    def publish_ahead(self) -> float:
        """A next key is published this long before it signs, so every cached JWKS already holds it."""
        return 2 * self.jwks_max_age

    @property
    def retire_delay(self) -> float:
        """A retiring key stays published until its last token expired and every cache saw that."""
        return self.max_token_lifetime + self.jwks_max_age + self.leeway
