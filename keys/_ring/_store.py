"""The key store protocol: where the ring lives, shared by the issuer replicas that sign with it."""

from __future__ import annotations

from typing import Protocol

from keys._algorithms._base import Algorithm
from keys._ring._keyring import KeyRing


class KeyStore(Protocol):
    """A durable key ring; every change is one atomic step and returns the new ring."""

    async def load(self, now: float) -> KeyRing:
        """The stored ring, bootstrapped (one active and one next key per algorithm) when empty."""
        ...

    async def peek(self) -> KeyRing | None:
        """The stored ring as it is, or None when there is none; changes nothing (`voicebank doctor`)."""
        ...

    async def current(self) -> KeyRing:
        """Cheap: the ring this replica signs with now, reloaded only when the store changed."""
        ...

    async def rotate(self, now: float, *, alg: Algorithm | None = None, force: bool = False) -> KeyRing:
        """`KeyRing.rotate` applied to the stored ring (the admin rotation)."""
        ...

    async def rotate_if_due(self, now: float) -> KeyRing | None:
        """The scheduled step when due; exactly one caller does it, the others get None."""
        ...

    async def revoke(self, kid: str, now: float) -> KeyRing:
        """`KeyRing.revoke` applied to the stored ring."""
        ...

    async def retire_alg(self, alg: Algorithm, now: float) -> KeyRing:
        """`KeyRing.retire_alg` applied to the stored ring (the end of an algorithm migration)."""
        ...
