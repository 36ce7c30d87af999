"""A crash at every write step of a change leaves a loadable ring with exactly one active key per algorithm.

The store's `step_hook` runs after each durable step (temp file written, renamed into place, PEM
deleted); raising from it stops the change there, as a crash would, leaving the files as they are.
"""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import keys
from keys import FileKeyStore, KeyRing, KeyState, RotationPolicy

POLICY = RotationPolicy(period=3600, jwks_max_age=300, leeway=60, max_token_lifetime=600)
T0 = 1_700_000_000.0
PASS = b"pw"
ALGS: tuple[keys.Algorithm, ...] = ("ES256", "EdDSA")
# At T1 the key retired at T0 + 600 is past its retire delay and the next key is old enough:
# one scheduled step writes a new PEM, keyring.json and deletes a retired PEM.
T1 = T0 + 600 + POLICY.retire_delay + 600

Operation = Callable[[FileKeyStore, KeyRing], Awaitable[object]]


class Crash(Exception):
    """The process died here."""


def store(directory: Path, hook: Callable[[str, Path], None] | None = None) -> FileKeyStore:
    return FileKeyStore(
        directory, passphrase=PASS, policy=POLICY, algs=ALGS, clock=lambda: T0, step_hook=hook
    )


async def scheduled(s: FileKeyStore, ring: KeyRing) -> object:
    return await s.rotate_if_due(T1)


async def forced(s: FileKeyStore, ring: KeyRing) -> object:
    return await s.rotate(T1, alg="ES256", force=True)


async def revoke_active(s: FileKeyStore, ring: KeyRing) -> object:
    return await s.revoke(ring.signing_key("EdDSA").kid, T1)


async def bootstrap(s: FileKeyStore, ring: KeyRing) -> object:
    return await s.load(T1)


async def prepared(directory: Path, operation: Operation) -> KeyRing | None:
    """A store one step before the operation: a ring with a retiring key that will retire at T1."""
    if operation is bootstrap:
        return None
    s = store(directory)
    await s.load(T0)
    return await s.rotate(T0 + 600)


def check_consistent(directory: Path, ring: KeyRing) -> None:
    for alg in ALGS:
        assert [r.state for r in ring.records if r.alg == alg].count(KeyState.ACTIVE) == 1
    live = {jwk["kid"] for jwk in ring.jwks()["keys"]}
    assert {p.stem for p in directory.glob("*.pem")} == live
    assert not list(directory.glob(".tmp-*"))


@pytest.mark.parametrize("operation", [scheduled, forced, revoke_active, bootstrap])
async def test_crash_at_every_step_leaves_a_loadable_ring(tmp_path: Path, operation: Operation) -> None:
    base = tmp_path / "base"
    base.mkdir()
    before = await prepared(base, operation)

    steps: list[tuple[str, str]] = []
    rehearsal = tmp_path / "rehearsal"
    shutil.copytree(base, rehearsal)
    after = await operation(store(rehearsal, lambda step, path: steps.append((step, path.name))), before)  # type: ignore[arg-type]
    assert isinstance(after, KeyRing)
    kinds = [step for step, _ in steps]
    assert "written" in kinds
    assert "replaced" in kinds
    if operation is scheduled:
        assert "deleted" in kinds  # the retired PEM
    # The commit point comes after every new PEM is in place.
    commit = steps.index(("replaced", "keyring.json"))
    assert all(name != "keyring.json" for _, name in steps[: commit - 1])
    assert all(step == "deleted" for step, _ in steps[commit + 1 :])

    for crash_at in range(1, len(steps) + 1):
        directory = tmp_path / f"crash-{crash_at}"
        shutil.copytree(base, directory)
        calls: list[str] = []

        def hook(step: str, path: Path, calls: list[str] = calls, crash_at: int = crash_at) -> None:
            calls.append(step)
            if len(calls) == crash_at:
                raise Crash(step)

        if before is not None:
            with pytest.raises(Crash):
                await operation(store(directory, hook), before)
        else:
            with pytest.raises(Crash):
                await store(directory, hook).load(T0)

        survivor = await store(directory).load(T1)
        check_consistent(directory, survivor)
        committed = crash_at >= commit + 1
        if before is not None:
            expected = after if committed else before
            assert survivor.signing_key("ES256").kid == expected.signing_key("ES256").kid
            assert survivor.signing_key("EdDSA").kid == expected.signing_key("EdDSA").kid
        # The survivor keeps working: a later rotation succeeds and is again consistent.
        later = await store(directory).rotate(T1 + 5000, force=True)
        check_consistent(directory, later)
