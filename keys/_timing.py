"""Timing facts every part must agree on: the clock leeway, and the JWKS max-age the rotation rule assumes."""

from __future__ import annotations

from typing import Final

CLOCK_LEEWAY: Final = 60
"""Seconds of clock skew every check allows: `iat`/`nbf` this far ahead, `exp` this far behind.

So a single-use id must be remembered until its token's `exp` plus this leeway (`keys.ReplayCache`), and a
retiring key stays published that much longer (`keys.RotationPolicy`)."""

DEFAULT_JWKS_MAX_AGE: Final = 300
"""The default of the `JWKS_MAX_AGE` setting: the JWKS `Cache-Control` max-age, which the rotation timing
assumes (a next key is published twice this long before it signs); also what a JWKS cache assumes when the
issuer's answer names no max-age."""
