"""The issuer's own published keys as a verifier key source, following the store's current ring."""

from __future__ import annotations

from keys import KeyRing, KeyStore, StaticKeys, VerifyKey


class RingKeys:
    """Verifies the issuer's own tokens (session grants, issuer bearer tokens) with the live JWKS keys."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store
        self._ring: KeyRing | None = None
        self._keys = StaticKeys({"keys": []})

    async def sync(self) -> None:
        """Follow the store: rebuild the key index when the ring changed (rotation, revocation)."""
        ring = await self._store.current()
        if ring is not self._ring:
            self._keys = StaticKeys(ring.jwks())
            self._ring = ring

    def get(self, kid: str | None) -> VerifyKey | None:
        return self._keys.get(kid)

    async def fetch_unknown(self, kid: str | None) -> VerifyKey | None:
        await self.sync()
        return self._keys.get(kid)
