"""The replay cache protocol: an identifier is used once, and remembered until the moment given with it."""

from __future__ import annotations

from typing import Protocol


class ReplayCache(Protocol):
    """Remembers identifiers until their expiry, shared by every replica that must agree on them.

    Callers choose the key (namespace it: `assertion:<client>:<jti>`) and pass the last moment the
    identifier could still be accepted, which is its token's `exp` plus `keys.CLOCK_LEEWAY`.
    """

    async def first_use(self, key: str, expires_at: float) -> bool:
        """True the first time `key` is used before `expires_at`, False on every later use until then.

        Raises `keys.ReplayUnavailable` when the cache cannot tell (Redis down, memory full of live
        identifiers): callers must refuse, never accept (fail closed).
        """
        ...
