"""The rotation schedule: a next key is published well before it signs, a retiring key kept long after.

A verifier may hold a JWKS fetched up to `jwks_max_age` ago. Every token must verify, for every
such cache, from the moment it is signed until it expires plus the leeway.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

from freezegun import freeze_time

import keys
from keys import FileKeyStore, KeyRing, RotationPolicy

POLICY = RotationPolicy(period=3600, jwks_max_age=300, leeway=60, max_token_lifetime=600)
T0 = 1_700_000_000.0
TICK = 30.0


def timeline(ticks: int) -> tuple[list[float], list[str], list[dict[str, dict[str, Any]]]]:
    """The scheduled step run every TICK seconds: times, signing kid and published JWKS at each tick."""
    ring = KeyRing.bootstrap(["ES256"], T0)
    times, signing, published = [], [], []
    for step in range(ticks):
        now = T0 + step * TICK
        ring = ring.advance(now, POLICY)
        times.append(now)
        signing.append(ring.signing_key().kid)
        published.append({jwk["kid"]: jwk for jwk in ring.jwks()["keys"]})
    return times, signing, published


def test_next_key_is_published_twice_the_max_age_before_it_signs() -> None:
    times, signing, published = timeline(int(4 * POLICY.period / TICK))
    first_seen: dict[str, float] = {}
    for now, jwks in zip(times, published, strict=True):
        for kid in jwks:
            first_seen.setdefault(kid, now)
    assert len(set(signing)) >= 4  # it did rotate, every period
    bootstrap_kid = signing[0]
    for now, kid in zip(times, signing, strict=True):
        if kid != bootstrap_kid:
            assert now - first_seen[kid] >= POLICY.publish_ahead


def test_every_cache_knows_the_key_of_every_unexpired_token() -> None:
    times, signing, published = timeline(int(3 * POLICY.period / TICK))
    window = POLICY.max_token_lifetime + POLICY.leeway
    for i, signed_at in enumerate(times):
        kid = signing[i]
        for j in range(i, len(times)):
            verify_at = times[j]
            if verify_at > signed_at + window:
                break
            # Any JWKS fetched within the last max-age may still be the verifier's cache.
            for k in range(j, -1, -1):
                if times[k] < verify_at - POLICY.jwks_max_age:
                    break
                assert kid in published[k], (signed_at, verify_at, times[k])


def b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify_with(jwks: dict[str, Any], token: str) -> None:
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(b64(header_b64))
    jwk = next(jwk for jwk in jwks["keys"] if jwk["kid"] == header["kid"])
    keys.VerifyKey.from_jwk(jwk).check_signature(f"{header_b64}.{payload_b64}".encode(), b64(signature_b64))


async def test_token_signed_just_before_a_rotation_verifies_until_it_expires(tmp_path: Path) -> None:
    with freeze_time("2025-01-01 00:00:00", real_asyncio=True) as frozen:
        store = FileKeyStore(tmp_path / "keys", passphrase=b"pw", policy=POLICY)
        await store.load(time.time())
        frozen.tick(POLICY.period - 1)
        before = await store.current()
        assert await store.rotate_if_due(time.time()) is None
        signed_at = time.time()
        token = keys.sign({"exp": signed_at + 600}, before.signing_key(), typ="at+jwt")
        frozen.tick(1)
        after = await store.rotate_if_due(time.time())
        assert after is not None
        assert after.signing_key().kid != before.signing_key().kid
        # A verifier that fetched just before the rotation knows the new key already.
        verify_with(before.jwks(), keys.sign({}, after.signing_key(), typ="at+jwt"))
        # The old key stays published until exp + leeway, and a cache fetched then lives max-age more.
        while time.time() <= signed_at + 600 + POLICY.leeway + POLICY.jwks_max_age:
            await store.rotate_if_due(time.time())
            verify_with((await store.current()).jwks(), token)
            frozen.tick(TICK)
        frozen.tick(POLICY.retire_delay)
        await store.rotate_if_due(time.time())
        assert before.signing_key().kid not in {jwk["kid"] for jwk in (await store.current()).jwks()["keys"]}
