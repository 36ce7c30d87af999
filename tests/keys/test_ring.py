"""The key ring: lifecycle, the one rotation rule, revocation and the invariants it refuses to break."""

from __future__ import annotations

from dataclasses import replace

import pytest

import keys
from keys import (
    CorruptKeyRing,
    KeyEvent,
    KeyRing,
    KeyState,
    NoSigningKey,
    RevocationRefused,
    RotationPolicy,
    RotationRefused,
    UnknownKeyId,
)

POLICY = RotationPolicy(period=3600, jwks_max_age=300, leeway=60, max_token_lifetime=600)
T0 = 1_700_000_000.0


def kid_in(ring: KeyRing, alg: keys.Algorithm, state: KeyState) -> list[str]:
    return [r.kid for r in ring.records if r.alg == alg and r.state is state]


def jwks_kids(ring: KeyRing) -> set[str]:
    return {jwk["kid"] for jwk in ring.jwks()["keys"]}


def test_policy_derives_publish_ahead_and_retire_delay() -> None:
    assert POLICY.publish_ahead == 600
    assert POLICY.retire_delay == 600 + 300 + 60
    assert RotationPolicy().period == 86400
    with pytest.raises(ValueError, match="period"):
        RotationPolicy(period=0)
    with pytest.raises(ValueError, match="negative"):
        RotationPolicy(jwks_max_age=-1)


def test_bootstrap_has_one_active_and_one_next_per_alg() -> None:
    ring = KeyRing.bootstrap(["ES256", "EdDSA"], T0)
    assert ring.algs == ("ES256", "EdDSA")
    for alg in ("ES256", "EdDSA"):
        assert len(kid_in(ring, alg, KeyState.ACTIVE)) == 1
        assert len(kid_in(ring, alg, KeyState.NEXT)) == 1
        assert ring.signing_key(alg).kid == kid_in(ring, alg, KeyState.ACTIVE)[0]
        assert ring.signing_key(alg).alg == alg
    assert len(ring.jwks()["keys"]) == 4
    with pytest.raises(NoSigningKey) as err:
        ring.signing_key("RS256")
    assert err.value.code == "no_signing_key"


def test_jwks_holds_public_members_only() -> None:
    ring = KeyRing.bootstrap(["ES256", "RS256", "EdDSA"], T0)
    for jwk in ring.jwks()["keys"]:
        assert jwk["use"] == "sig"
        assert jwk["kid"] == keys.thumbprint(jwk)
        assert not {"d", "p", "q", "dp", "dq", "qi"} & jwk.keys()
        keys.VerifyKey.from_jwk(jwk)  # refuses private members itself


def test_describe_and_repr_carry_no_key_material() -> None:
    ring = KeyRing.bootstrap(["ES256"], T0)
    described = ring.describe()
    assert {d["state"] for d in described} == {"active", "next"}
    assert set(described[0]) == {
        "kid",
        "alg",
        "state",
        "created_at",
        "activated_at",
        "retiring_at",
        "revoked_at",
    }
    pem = ring.signing_key().private_pem(None).decode()
    secret_line = pem.splitlines()[1]
    assert secret_line not in repr(ring)
    assert secret_line not in str(described)
    assert "private_key" not in repr(ring.signing_key())


def test_rotate_refuses_a_next_key_published_too_recently() -> None:
    ring = KeyRing.bootstrap(["ES256"], T0)
    with pytest.raises(RotationRefused) as err:
        ring.rotate(T0 + 599, POLICY)
    assert err.value.code == "next_key_too_young"
    assert "600 s" in str(err.value)
    assert "force" in str(err.value)


def test_rotate_promotes_next_retires_active_and_publishes_a_new_next() -> None:
    ring = KeyRing.bootstrap(["ES256"], T0)
    old_active = ring.signing_key().kid
    upcoming = kid_in(ring, "ES256", KeyState.NEXT)[0]
    rotated = ring.rotate(T0 + 600, POLICY)
    assert rotated.signing_key().kid == upcoming
    assert rotated.record(old_active).state is KeyState.RETIRING
    assert rotated.record(old_active).retiring_at == T0 + 600
    assert rotated.record(upcoming).activated_at == T0 + 600
    fresh = kid_in(rotated, "ES256", KeyState.NEXT)
    assert len(fresh) == 1
    assert fresh[0] not in (old_active, upcoming)
    assert jwks_kids(rotated) == {old_active, upcoming, fresh[0]}
    # The ring is immutable: the original snapshot did not change.
    assert ring.signing_key().kid == old_active


def test_forced_rotation_ignores_the_publish_delay() -> None:
    ring = KeyRing.bootstrap(["ES256", "EdDSA"], T0)
    upcoming = kid_in(ring, "EdDSA", KeyState.NEXT)[0]
    rotated = ring.rotate(T0 + 1, POLICY, alg="EdDSA", force=True)
    assert rotated.signing_key("EdDSA").kid == upcoming
    assert rotated.signing_key("ES256").kid == ring.signing_key("ES256").kid
    # docs/architecture.md "Changing the signing algorithm":
    # an algorithm the ring does not hold gets a next key first, even when forced.
    prepared = ring.rotate(T0 + 1, POLICY, alg="RS256", force=True)
    assert kid_in(prepared, "RS256", KeyState.NEXT)
    with pytest.raises(NoSigningKey):
        prepared.signing_key("RS256")


def test_retiring_key_retires_after_the_retire_delay_and_loses_its_private_key() -> None:
    ring = KeyRing.bootstrap(["ES256"], T0)
    old = ring.signing_key().kid
    ring = ring.rotate(T0 + 600, POLICY)
    assert not ring.due(T0 + 600 + POLICY.retire_delay - 1, POLICY)
    assert ring.advance(T0 + 600 + POLICY.retire_delay - 1, POLICY) is ring
    assert ring.due(T0 + 600 + POLICY.retire_delay, POLICY)
    advanced = ring.advance(T0 + 600 + POLICY.retire_delay, POLICY)
    assert advanced.record(old).state is KeyState.RETIRED
    assert old not in jwks_kids(advanced)
    assert old not in advanced.pairs
    # Retiring alone is not a rotation.
    assert advanced.signing_key().kid == ring.signing_key().kid


def test_due_when_the_active_key_served_its_period() -> None:
    ring = KeyRing.bootstrap(["ES256"], T0)
    assert not ring.due(T0 + 3599, POLICY)
    assert ring.due(T0 + 3600, POLICY)
    advanced = ring.advance(T0 + 3600, POLICY)
    assert advanced.signing_key().kid == kid_in(ring, "ES256", KeyState.NEXT)[0]
    assert not advanced.due(T0 + 3601, POLICY)


def test_scheduled_step_waits_for_a_young_next_key() -> None:
    # An admin forced a rotation late in the period: the new next key is too young when the period ends.
    ring = KeyRing.bootstrap(["ES256"], T0).rotate(T0 + 3500, POLICY, force=True)
    young = kid_in(ring, "ES256", KeyState.NEXT)[0]
    later = ring.advance(T0 + 3500 + POLICY.retire_delay, POLICY)  # only the retirement
    assert not later.due(T0 + 3500 + 3600 - 1, POLICY)
    assert later.due(T0 + 3500 + 3600, POLICY)
    assert later.advance(T0 + 7100, POLICY).signing_key().kid == young


def test_scheduled_step_publishes_a_missing_next_key_before_promoting() -> None:
    ring = KeyRing.bootstrap(["ES256"], T0)
    upcoming = kid_in(ring, "ES256", KeyState.NEXT)[0]
    lonely = KeyRing(tuple(r for r in ring.records if r.kid != upcoming), ring.pairs)
    with pytest.raises(RotationRefused, match="no next"):
        lonely.rotate(T0 + 4000, POLICY)
    published = lonely.advance(T0 + 4000, POLICY)
    assert published.signing_key().kid == lonely.signing_key().kid
    assert len(kid_in(published, "ES256", KeyState.NEXT)) == 1
    forced = lonely.rotate(T0 + 4000, POLICY, force=True)
    assert forced.signing_key().kid != lonely.signing_key().kid
    assert forced.record(lonely.signing_key().kid).state is KeyState.RETIRING


def test_revoking_the_active_key_promotes_the_next_at_once() -> None:
    ring = KeyRing.bootstrap(["ES256"], T0)
    active, upcoming = ring.signing_key().kid, kid_in(ring, "ES256", KeyState.NEXT)[0]
    revoked = ring.revoke(active, T0 + 5)
    assert revoked.record(active).state is KeyState.REVOKED
    assert revoked.record(active).revoked_at == T0 + 5
    assert revoked.signing_key().kid == upcoming
    assert active not in jwks_kids(revoked)
    assert active not in revoked.pairs
    assert len(kid_in(revoked, "ES256", KeyState.NEXT)) == 1
    assert revoked.revoke(active, T0 + 6) is revoked  # idempotent


def test_revoking_a_retiring_or_next_key() -> None:
    ring = KeyRing.bootstrap(["ES256"], T0).rotate(T0 + 600, POLICY)
    retiring = kid_in(ring, "ES256", KeyState.RETIRING)[0]
    upcoming = kid_in(ring, "ES256", KeyState.NEXT)[0]
    after = ring.revoke(retiring, T0 + 700)
    assert retiring not in jwks_kids(after)
    assert after.signing_key().kid == ring.signing_key().kid
    after = after.revoke(upcoming, T0 + 700)
    assert upcoming not in jwks_kids(after)
    replacement = kid_in(after, "ES256", KeyState.NEXT)
    assert len(replacement) == 1
    assert replacement[0] != upcoming


def test_revoke_unknown_kid_is_a_typed_error() -> None:
    ring = KeyRing.bootstrap(["ES256"], T0)
    with pytest.raises(UnknownKeyId) as err:
        ring.revoke("no-such-kid", T0)
    assert err.value.code == "unknown_key_id"  # distinct from the verifier's UnknownKey (unknown_kid)
    assert isinstance(err.value, LookupError)


def test_revoking_the_only_key_needs_a_next_key() -> None:
    ring = KeyRing.bootstrap(["ES256"], T0)
    upcoming = kid_in(ring, "ES256", KeyState.NEXT)[0]
    lonely = KeyRing(tuple(r for r in ring.records if r.kid != upcoming), ring.pairs)
    with pytest.raises(RevocationRefused) as err:
        lonely.revoke(lonely.signing_key().kid, T0)
    assert err.value.code == "no_next_key"


def test_ring_refuses_two_active_keys_or_a_missing_private_key() -> None:
    ring = KeyRing.bootstrap(["ES256"], T0)
    records = tuple(replace(r, state=KeyState.ACTIVE) for r in ring.records)
    with pytest.raises(CorruptKeyRing, match="2 active ES256"):
        KeyRing(records, ring.pairs)
    with pytest.raises(CorruptKeyRing, match="missing"):
        KeyRing(ring.records, {})
    with pytest.raises(CorruptKeyRing, match="twice"):
        KeyRing(ring.records + ring.records[:1], ring.pairs)


def test_ensure_algs_adds_a_new_algorithm() -> None:
    ring = KeyRing.bootstrap(["ES256"], T0)
    assert ring.ensure_algs(["ES256"], T0) is ring
    wider = ring.ensure_algs(["ES256", "EdDSA"], T0 + 1)
    assert wider.algs == ("ES256", "EdDSA")
    assert wider.signing_key().kid == ring.signing_key().kid


def test_key_events_name_revoked_and_new_active_kids() -> None:
    ring = KeyRing.bootstrap(["ES256"], T0)
    rotated = ring.rotate(T0 + 600, POLICY)
    assert keys.key_events(ring, rotated) == [KeyEvent("rotated", rotated.signing_key().kid)]
    retiring = kid_in(rotated, "ES256", KeyState.RETIRING)[0]
    assert keys.key_events(rotated, rotated.revoke(retiring, T0 + 700)) == [KeyEvent("revoked", retiring)]
    emergency = rotated.revoke(rotated.signing_key().kid, T0 + 700)
    assert keys.key_events(rotated, emergency) == [
        KeyEvent("revoked", rotated.signing_key().kid),
        KeyEvent("rotated", emergency.signing_key().kid),
    ]
    assert keys.KEY_EVENTS_CHANNEL == "voicebank:key-events"
