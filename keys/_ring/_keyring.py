"""The key ring: an immutable snapshot of keys and their lifecycle, changed by one rotation rule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

from keys._algorithms._base import ALGORITHMS, Algorithm
from keys._algorithms._keypair import KeyPair, generate_key
from keys._ring._errors import (
    CorruptKeyRing,
    NoSigningKey,
    RevocationRefused,
    RotationRefused,
    UnknownKeyId,
)
from keys._ring._rotation_policy import RotationPolicy


class KeyState(StrEnum):
    NEXT = "next"
    ACTIVE = "active"
    RETIRING = "retiring"
    RETIRED = "retired"
    REVOKED = "revoked"


# Published in the JWKS, private key held; the order is the JWKS order.
LIVE_STATES = (KeyState.ACTIVE, KeyState.NEXT, KeyState.RETIRING)


@dataclass(frozen=True)
class KeyRecord:
    """What the ring knows of one key besides its private material."""

    kid: str
    alg: Algorithm
    state: KeyState
    created_at: float
    activated_at: float | None = None
    retiring_at: float | None = None
    revoked_at: float | None = None

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    def describe(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}


_Action = Literal["promote", "publish"] | None


class _Draft:
    """A mutable copy of a ring used while one operation builds the next snapshot."""

    def __init__(self, ring: KeyRing) -> None:
        self.records = {record.kid: record for record in ring.records}
        self.pairs = dict(ring.pairs)

    def one(self, alg: Algorithm, state: KeyState) -> KeyRecord | None:
        return next((r for r in self.records.values() if r.alg == alg and r.state is state), None)

    def put(self, record: KeyRecord) -> None:
        self.records[record.kid] = record
        if not record.live:
            self.pairs.pop(record.kid, None)  # retired and revoked keys lose their private key

    def publish(self, alg: Algorithm, now: float, state: KeyState = KeyState.NEXT) -> None:
        pair = generate_key(alg)
        self.pairs[pair.kid] = pair
        activated_at = now if state is KeyState.ACTIVE else None
        self.put(KeyRecord(pair.kid, alg, state, created_at=now, activated_at=activated_at))

    def retire(self, expired: Sequence[KeyRecord]) -> None:
        for record in expired:
            self.put(replace(record, state=KeyState.RETIRED))

    def promote(self, alg: Algorithm, now: float) -> None:
        """Next becomes active, active becomes retiring, and a fresh next is published at once."""
        active, upcoming = self.one(alg, KeyState.ACTIVE), self.one(alg, KeyState.NEXT)
        if active is not None:
            self.put(replace(active, state=KeyState.RETIRING, retiring_at=now))
        if upcoming is None:
            self.publish(alg, now, KeyState.ACTIVE)
        else:
            self.put(replace(upcoming, state=KeyState.ACTIVE, activated_at=now))
        self.publish(alg, now)

    def ring(self) -> KeyRing:
        return KeyRing(tuple(self.records.values()), self.pairs)


@dataclass(frozen=True, eq=False)
class KeyRing:
    """Records plus the private keys of the live ones; every change returns a new ring."""

    records: tuple[KeyRecord, ...]
    pairs: Mapping[str, KeyPair] = field(repr=False)

    def __post_init__(self) -> None:
        kids = [record.kid for record in self.records]
        if len(set(kids)) != len(kids):
            raise CorruptKeyRing("the key ring names a kid twice")
        for record in self.records:
            if not record.live:
                continue
            pair = self.pairs.get(record.kid)
            if pair is None:
                raise CorruptKeyRing(f"the private key of {record.state} key {record.kid} is missing")
            if pair.kid != record.kid or pair.alg != record.alg:
                raise CorruptKeyRing(f"the private key stored for {record.kid} is a different key")
        # An algorithm may be prepared (a next key, no active one yet) or winding down (retiring keys
        # only), but never has two active or two next keys, and some algorithm always signs.
        live_algs = {record.alg for record in self.records if record.live}
        for alg in live_algs:
            actives = self._all(alg, KeyState.ACTIVE)
            if len(actives) > 1:
                raise CorruptKeyRing(f"the key ring has {len(actives)} active {alg} keys instead of one")
            if len(self._all(alg, KeyState.NEXT)) > 1:
                raise CorruptKeyRing(f"the key ring has more than one next {alg} key")
        if live_algs and not any(record.state is KeyState.ACTIVE for record in self.records):
            raise CorruptKeyRing("the key ring has no active key")
        live = {record.kid for record in self.records if record.live}
        pairs = {kid: pair for kid, pair in self.pairs.items() if kid in live}
        object.__setattr__(self, "pairs", MappingProxyType(pairs))

    @classmethod
    def bootstrap(cls, algs: Sequence[Algorithm], now: float) -> KeyRing:
        """A fresh ring: one active and one next key per algorithm."""
        return cls((), {}).ensure_algs(algs, now)

    def _all(self, alg: Algorithm, state: KeyState) -> list[KeyRecord]:
        return [r for r in self.records if r.alg == alg and r.state is state]

    def _one(self, alg: Algorithm, state: KeyState) -> KeyRecord | None:
        found = self._all(alg, state)
        return found[0] if found else None

    @property
    def algs(self) -> tuple[Algorithm, ...]:
        """The algorithms this ring signs with."""
        return tuple(alg for alg in ALGORITHMS if self._one(alg, KeyState.ACTIVE) is not None)

    @property
    def live_algs(self) -> tuple[Algorithm, ...]:
        """The algorithms with a published key: signing, prepared (next only) or winding down."""
        return tuple(alg for alg in ALGORITHMS if any(r.alg == alg and r.live for r in self.records))

    def record(self, kid: str) -> KeyRecord:
        for record in self.records:
            if record.kid == kid:
                return record
        raise UnknownKeyId(f"no key has the kid {kid[:64]!r}")

    def signing_key(self, alg: Algorithm = "ES256") -> KeyPair:
        """The active key of that algorithm."""
        active = self._one(alg, KeyState.ACTIVE)
        if active is None:
            raise NoSigningKey(f"the key ring has no active {alg} key")
        return self.pairs[active.kid]

    def jwks(self) -> dict[str, Any]:
        """The public JWKS: next, active and retiring keys, public members only."""
        order = {state: index for index, state in enumerate(LIVE_STATES)}
        live = sorted((r for r in self.records if r.live), key=lambda r: (order[r.state], r.created_at))
        return {"keys": [self.pairs[record.kid].public_jwk() for record in live]}

    def describe(self) -> list[dict[str, Any]]:
        """The admin view of every key: ids, states and timestamps, never key material."""
        return [record.describe() for record in self.records]

    def ensure_algs(self, algs: Sequence[Algorithm], now: float, publish_ahead: float = 0.0) -> KeyRing:
        """This ring with an active and a next key for each algorithm it does not sign with yet.

        An algorithm prepared by `rotate(alg=...)` has a next key, which becomes active once it has
        been published for `publish_ahead` (RotationRefused before then), so no verifier meets an
        unknown key. An algorithm the ring never held gets a fresh active key at once (a new ring).
        An algorithm whose keys are retiring after `retire_alg` is left alone.
        """
        # An algorithm being retired (`retire_alg`) is not brought back by a replica still set to it.
        missing = [
            alg
            for alg in dict.fromkeys(algs)
            if alg not in self.algs and self._one(alg, KeyState.RETIRING) is None
        ]
        if not missing:
            return self
        draft = _Draft(self)
        for alg in missing:
            upcoming = self._one(alg, KeyState.NEXT)
            if upcoming is None:
                draft.publish(alg, now, KeyState.ACTIVE)
                draft.publish(alg, now)
                continue
            age = now - upcoming.created_at
            if age < publish_ahead:
                raise RotationRefused(
                    f"the next {alg} key has been published for {max(age, 0):.0f} s; it may sign after "
                    f"{publish_ahead:.0f} s (twice the JWKS max-age), {publish_ahead - age:.0f} s from now"
                )
            draft.put(replace(upcoming, state=KeyState.ACTIVE, activated_at=now))
            draft.publish(alg, now)
        return draft.ring()

    def _schedule(
        self, alg: Algorithm, now: float, policy: RotationPolicy
    ) -> tuple[list[KeyRecord], _Action]:
        """The scheduled work for one algorithm: retiring keys past their time, and promote or publish."""
        expired = [
            r
            for r in self._all(alg, KeyState.RETIRING)
            if r.retiring_at is None or r.retiring_at + policy.retire_delay <= now
        ]
        active = self._one(alg, KeyState.ACTIVE)
        if active is None:
            return expired, None
        started = active.activated_at if active.activated_at is not None else active.created_at
        served = started + policy.period <= now
        upcoming = self._one(alg, KeyState.NEXT)
        action: _Action = None
        if served and upcoming is None:
            action = "publish"
        elif served and upcoming is not None and now - upcoming.created_at >= policy.publish_ahead:
            action = "promote"
        return expired, action

    def due(self, now: float, policy: RotationPolicy) -> bool:
        """Whether `advance` would change anything: an active key served its period, or a key retires."""
        work = (self._schedule(alg, now, policy) for alg in self.live_algs)
        return any(expired or action for expired, action in work)

    def advance(self, now: float, policy: RotationPolicy) -> KeyRing:
        """The scheduled step: retire keys past their time, rotate each algorithm whose key served."""
        if not self.due(now, policy):
            return self
        draft = _Draft(self)
        for alg in self.live_algs:
            expired, action = self._schedule(alg, now, policy)
            draft.retire(expired)
            if action == "promote":
                draft.promote(alg, now)
            elif action == "publish":
                # A next key must be published for `publish_ahead` before it may sign.
                draft.publish(alg, now)
        return draft.ring()

    def rotate(
        self, now: float, policy: RotationPolicy, *, alg: Algorithm | None = None, force: bool = False
    ) -> KeyRing:
        """Rotate now: retire expired keys, promote the next key, publish a fresh next key.

        Refused (RotationRefused) when the next key has been published for less than
        `policy.publish_ahead`, since verifiers with a cached JWKS would not know it yet;
        `force=True` is the emergency override.
        """
        if alg is not None and alg not in self.algs and self._one(alg, KeyState.NEXT) is None:
            # A new algorithm: its first key is published as next and signs only when promoted, so a
            # change of ISSUER_SIGNING_ALG can be prepared without refusing a single token.
            draft = _Draft(self)
            draft.publish(alg, now)
            return draft.ring()
        targets = self.algs if alg is None else (alg,)
        for target in targets:
            upcoming = self._one(target, KeyState.NEXT)
            if force:
                continue
            if upcoming is None:
                raise RotationRefused(f"no next {target} key is published; force the rotation to override")
            age = now - upcoming.created_at
            if age < policy.publish_ahead:
                raise RotationRefused(
                    f"the next {target} key has been published for {max(age, 0):.0f} s; it must be published "
                    f"for {policy.publish_ahead:.0f} s (twice the JWKS max-age) before it signs so that "
                    "every verifier already holds it; force the rotation to override"
                )
        draft = _Draft(self)
        for target in targets:
            draft.retire(self._schedule(target, now, policy)[0])
            draft.promote(target, now)
        return draft.ring()

    def retire_alg(self, alg: Algorithm, now: float) -> KeyRing:
        """End an algorithm after a migration: its active key retires on the usual schedule (published
        until every token it signed has expired) and its next key, which never signed, leaves at once.

        Refused (NoSigningKey) for an algorithm the ring does not sign with, and for the last one.
        """
        active = self._one(alg, KeyState.ACTIVE)
        if active is None:
            raise NoSigningKey(f"the key ring does not sign with {alg}")
        if self.algs == (alg,):
            raise NoSigningKey(f"{alg} is the only algorithm the key ring signs with")
        draft = _Draft(self)
        draft.put(replace(active, state=KeyState.RETIRING, retiring_at=now))
        upcoming = self._one(alg, KeyState.NEXT)
        if upcoming is not None:
            draft.put(replace(upcoming, state=KeyState.RETIRED))
        return draft.ring()

    def revoke(self, kid: str, now: float) -> KeyRing:
        """Take a key out of the JWKS at once; revoking the active key promotes the next one."""
        record = self.record(kid)
        if record.state is KeyState.REVOKED:
            return self
        draft = _Draft(self)
        revoked = replace(record, state=KeyState.REVOKED, revoked_at=now)
        if record.state is KeyState.ACTIVE:
            upcoming = self._one(record.alg, KeyState.NEXT)
            if upcoming is None:
                raise RevocationRefused(
                    f"{kid} is the active {record.alg} key and no next key is published to take over; "
                    "rotate with force first, then revoke it"
                )
            draft.put(revoked)
            draft.put(replace(upcoming, state=KeyState.ACTIVE, activated_at=now))
            draft.publish(record.alg, now)
        elif record.state is KeyState.NEXT:
            draft.put(revoked)
            draft.publish(record.alg, now)  # keep a next key published
        else:
            draft.put(revoked)
        return draft.ring()
