"""Changing the signing algorithm: prepare a next key of the new one, switch, then retire the old one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from keys import (
    CorruptKeyRing,
    FileKeyStore,
    KeyRing,
    KeyState,
    NoSigningKey,
    RotationPolicy,
    RotationRefused,
)

POLICY = RotationPolicy(period=3600, jwks_max_age=300, leeway=60, max_token_lifetime=600)
T0 = 1_700_000_000.0


def states(ring: KeyRing, alg: str) -> list[str]:
    return sorted(r.state.value for r in ring.records if r.alg == alg)


def jwks_algs(ring: KeyRing) -> list[str]:
    return sorted(jwk["alg"] for jwk in ring.jwks()["keys"])


def test_rotating_to_a_new_algorithm_publishes_a_next_key_that_does_not_sign() -> None:
    ring = KeyRing.bootstrap(["ES256"], T0)
    prepared = ring.rotate(T0 + 1, POLICY, alg="RS256")
    assert states(prepared, "RS256") == ["next"]
    assert states(prepared, "ES256") == states(ring, "ES256")  # the signing algorithm is untouched
    assert prepared.algs == ("ES256",)
    assert prepared.live_algs == ("ES256", "RS256")
    assert jwks_algs(prepared) == ["ES256", "ES256", "RS256"]
    assert prepared.signing_key("ES256").kid == ring.signing_key("ES256").kid
    with pytest.raises(NoSigningKey):
        prepared.signing_key("RS256")
    # Nothing is scheduled for the prepared key: it waits for the switch.
    assert not prepared.due(T0 + 10, POLICY)


def test_the_switch_promotes_the_prepared_key_only_once_every_cache_holds_it() -> None:
    prepared = KeyRing.bootstrap(["ES256"], T0).rotate(T0, POLICY, alg="RS256")
    waiting = POLICY.publish_ahead
    with pytest.raises(RotationRefused, match="may sign after 600 s"):
        prepared.ensure_algs(["RS256"], T0 + waiting - 1, waiting)
    switched = prepared.ensure_algs(["RS256"], T0 + waiting, waiting)
    next_kid = next(r.kid for r in prepared.records if r.alg == "RS256")
    assert switched.signing_key("RS256").kid == next_kid  # the key verifiers already cached
    assert states(switched, "RS256") == ["active", "next"]
    assert switched.algs == ("ES256", "RS256")  # replicas not yet switched keep signing ES256


def test_an_admin_rotation_promotes_a_prepared_key_by_the_same_timing_rule() -> None:
    prepared = KeyRing.bootstrap(["ES256"], T0).rotate(T0, POLICY, alg="RS256")
    with pytest.raises(RotationRefused):
        prepared.rotate(T0 + 10, POLICY, alg="RS256")
    assert states(prepared.rotate(T0 + 10, POLICY, alg="RS256", force=True), "RS256") == ["active", "next"]
    promoted = prepared.rotate(T0 + POLICY.publish_ahead, POLICY, alg="RS256")
    assert states(promoted, "RS256") == ["active", "next"]
    assert promoted.rotate(T0 + POLICY.publish_ahead, POLICY, alg="RS256", force=True).algs == (
        "ES256",
        "RS256",
    )


def test_retiring_the_old_algorithm_keeps_its_key_published_until_its_tokens_expired() -> None:
    both = KeyRing.bootstrap(["ES256"], T0).rotate(T0, POLICY, alg="RS256").ensure_algs(["RS256"], T0 + 600)
    old = both.signing_key("ES256").kid
    ended = both.retire_alg("ES256", T0 + 700)
    assert ended.algs == ("RS256",)
    assert states(ended, "ES256") == ["retired", "retiring"]  # the next ES256 key never signed: gone
    assert old in {jwk["kid"] for jwk in ended.jwks()["keys"]}
    assert not ended.due(T0 + 700 + POLICY.retire_delay - 1, POLICY)
    gone = ended.advance(T0 + 700 + POLICY.retire_delay, POLICY)
    assert states(gone, "ES256") == ["retired", "retired"]
    assert jwks_algs(gone) == ["RS256", "RS256"]
    assert gone.live_algs == ("RS256",)


def test_the_last_signing_algorithm_cannot_be_retired() -> None:
    ring = KeyRing.bootstrap(["ES256"], T0)
    with pytest.raises(NoSigningKey, match="only algorithm"):
        ring.retire_alg("ES256", T0)
    with pytest.raises(NoSigningKey, match="does not sign with RS256"):
        ring.rotate(T0, POLICY, alg="RS256").retire_alg("RS256", T0)


def test_a_ring_where_nothing_signs_is_corrupt() -> None:
    ring = KeyRing.bootstrap(["ES256"], T0)
    nothing_active = tuple(
        replace(r, state=KeyState.NEXT) if r.state is KeyState.ACTIVE else replace(r, state=KeyState.RETIRED)
        for r in ring.records
    )
    with pytest.raises(CorruptKeyRing, match="no active key"):
        KeyRing(nothing_active, ring.pairs)


async def test_a_prepared_ring_survives_the_file_store_and_a_switched_replica_promotes_it(
    tmp_path: Path,
) -> None:
    old = FileKeyStore(tmp_path, passphrase=b"pw", policy=POLICY, algs=("ES256",))
    await old.load(T0)
    prepared = await old.rotate(T0 + 1, alg="RS256")
    assert states(prepared, "RS256") == ["next"]
    new = FileKeyStore(tmp_path, passphrase=b"pw", policy=POLICY, algs=("RS256",))
    with pytest.raises(RotationRefused):
        await new.load(T0 + 2)
    switched = await new.load(T0 + 1 + POLICY.publish_ahead)
    assert switched.signing_key("RS256").kid == prepared.records[-1].kid
    # The replica still configured for ES256 reads the same ring and keeps signing with its key.
    assert (await old.current()).signing_key("ES256").kid == prepared.signing_key("ES256").kid
    retired = await new.retire_alg("ES256", T0 + 2000)
    assert retired.algs == ("RS256",)
