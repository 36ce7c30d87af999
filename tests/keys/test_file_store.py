"""The file key store on real files: format, modes, passphrase, corruption and cross-process coordination."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

import keys
from keys import CorruptKeyRing, FileKeyStore, KeyState, RotationPolicy, WrongPassphrase

POLICY = RotationPolicy(period=3600, jwks_max_age=300, leeway=60, max_token_lifetime=600)
T0 = 1_700_000_000.0
PASS = b"correct horse battery staple"


def store_at(directory: Path, passphrase: bytes | None = PASS, **kwargs: object) -> FileKeyStore:
    return FileKeyStore(directory, passphrase=passphrase, policy=POLICY, clock=lambda: T0, **kwargs)  # type: ignore[arg-type]


def pem_names(directory: Path) -> set[str]:
    return {path.stem for path in directory.glob("*.pem")}


def pem_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.pem"))


def file_names(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir()}


def live_kids(ring: keys.KeyRing) -> set[str]:
    return {jwk["kid"] for jwk in ring.jwks()["keys"]}


async def test_bootstrap_writes_the_documented_format(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    ring = await store_at(directory, algs=("ES256", "EdDSA")).load(T0)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    doc = json.loads((directory / "keyring.json").read_text())
    assert doc["format_version"] == 1
    assert {(k["alg"], k["state"]) for k in doc["keys"]} == {
        ("ES256", "active"), ("ES256", "next"), ("EdDSA", "active"), ("EdDSA", "next"),
    }  # fmt: skip
    assert all(k["created_at"] == T0 for k in doc["keys"])
    assert pem_names(directory) == live_kids(ring)
    for path in pem_files(directory):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert "PRIVATE" not in (directory / "keyring.json").read_text()


async def test_without_passphrase_pems_are_plain_pkcs8(tmp_path: Path) -> None:
    await store_at(tmp_path, passphrase=None).load(T0)
    for path in pem_files(tmp_path):
        assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


async def test_a_second_store_loads_the_same_ring_and_signs_with_the_same_key(tmp_path: Path) -> None:
    first = await store_at(tmp_path).load(T0)
    second = await store_at(tmp_path).load(T0 + 10)
    assert second.describe() == first.describe()
    token = keys.sign({"sub": "x"}, second.signing_key(), typ="at+jwt")
    assert token.count(".") == 2
    assert second.signing_key().kid == first.signing_key().kid


async def test_rotation_and_retirement_remove_the_retired_pem(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    ring = await store.load(T0)
    old = ring.signing_key().kid
    ring = await store.rotate(T0 + 600)
    assert old in pem_names(tmp_path)
    assert await store.rotate_if_due(T0 + 600 + POLICY.retire_delay - 1) is None
    retired = await store.rotate_if_due(T0 + 600 + POLICY.retire_delay)
    assert retired is not None
    assert retired.record(old).state is KeyState.RETIRED
    assert pem_names(tmp_path) == live_kids(retired)
    reloaded = await store_at(tmp_path).load(T0 + 2000)
    assert reloaded.record(old).state is KeyState.RETIRED


async def test_revoke_deletes_the_private_key(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    ring = await store.load(T0)
    active = ring.signing_key().kid
    revoked = await store.revoke(active, T0 + 1)
    assert active not in pem_names(tmp_path)
    assert revoked.signing_key().kid != active
    assert (await store_at(tmp_path).load(T0 + 2)).signing_key().kid == revoked.signing_key().kid
    with pytest.raises(keys.UnknownKeyId):
        await store.revoke("nope", T0 + 3)


async def test_refused_rotation_changes_nothing(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    await store.load(T0)
    before = (tmp_path / "keyring.json").read_bytes()
    with pytest.raises(keys.RotationRefused):
        await store.rotate(T0 + 10)
    assert (tmp_path / "keyring.json").read_bytes() == before


async def test_wrong_passphrase_is_a_clear_typed_error(tmp_path: Path) -> None:
    ring = await store_at(tmp_path).load(T0)
    pem_body = ring.signing_key().private_pem(None).decode().splitlines()[1]
    with pytest.raises(WrongPassphrase) as err:
        await store_at(tmp_path, passphrase=b"wrong").load(T0)
    assert err.value.code == "wrong_passphrase"
    assert "wrong passphrase" in str(err.value)
    assert err.value.__cause__ is None
    assert err.value.__suppress_context__
    assert pem_body not in str(err.value)
    with pytest.raises(WrongPassphrase, match="KEYS_PASSPHRASE"):
        await store_at(tmp_path, passphrase=None).load(T0)


async def test_a_passphrase_for_plain_keys_is_refused(tmp_path: Path) -> None:
    await store_at(tmp_path, passphrase=None).load(T0)
    with pytest.raises(WrongPassphrase, match="not encrypted"):
        await store_at(tmp_path).load(T0)


def _two_actives(doc: dict[str, object]) -> dict[str, object]:
    entries = doc["keys"]
    assert isinstance(entries, list)
    return {**doc, "keys": [{**entry, "state": "active"} for entry in entries]}


def _no_active(doc: dict[str, object]) -> dict[str, object]:
    entries = doc["keys"]
    assert isinstance(entries, list)
    return {**doc, "keys": [e for e in entries if e["state"] != "active"]}


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda doc: "{not json", "not valid JSON"),
        (lambda doc: [], "not a JSON object"),
        (lambda doc: {**doc, "format_version": 99}, "format_version"),
        (lambda doc: {**doc, "keys": "all"}, "no list of keys"),
        (lambda doc: {**doc, "keys": [{**doc["keys"][0], "kid": "../../etc/passwd"}]}, "kid"),
        (lambda doc: {**doc, "keys": [{**doc["keys"][0], "alg": "HS256"}]}, "unsupported alg"),
        (lambda doc: {**doc, "keys": [{**doc["keys"][0], "state": "zombie"}]}, "unknown state"),
        (lambda doc: {**doc, "keys": [{**doc["keys"][0], "created_at": "NaN"}]}, "finite"),
        (lambda doc: {**doc, "keys": [7]}, "not an object"),
        (_two_actives, "2 active ES256"),
        (_no_active, "no active key"),
    ],
    ids=[
        "json",
        "array",
        "version",
        "keys",
        "kid",
        "alg",
        "state",
        "time",
        "entry",
        "two-active",
        "zero-active",
    ],
)
async def test_corrupted_keyring_json_is_refused_with_a_clear_error(
    tmp_path: Path, corrupt: object, message: str
) -> None:
    await store_at(tmp_path).load(T0)
    path = tmp_path / "keyring.json"
    doc = json.loads(path.read_text())
    bad = corrupt(doc)  # type: ignore[operator]
    path.write_text(bad if isinstance(bad, str) else json.dumps(bad))
    pems_before = pem_names(tmp_path)
    with pytest.raises(CorruptKeyRing, match=message) as err:
        await store_at(tmp_path).load(T0)
    assert err.value.code == "corrupt_keyring"
    assert "keyring.json" in str(err.value)
    assert pem_names(tmp_path) == pems_before  # a refused load deletes nothing


async def test_a_keyring_naming_a_missing_pem_is_refused(tmp_path: Path) -> None:
    ring = await store_at(tmp_path).load(T0)
    (tmp_path / f"{ring.signing_key().kid}.pem").unlink()
    with pytest.raises(CorruptKeyRing, match=f"active key {ring.signing_key().kid} is missing"):
        await store_at(tmp_path).load(T0)


async def test_a_pem_holding_another_key_is_refused(tmp_path: Path) -> None:
    ring = await store_at(tmp_path).load(T0)
    intruder = keys.generate_key().private_pem(PASS)
    (tmp_path / f"{ring.signing_key().kid}.pem").write_bytes(intruder)
    with pytest.raises(CorruptKeyRing, match="different key"):
        await store_at(tmp_path).load(T0)


async def test_orphan_pems_and_temp_files_are_cleaned_on_load(tmp_path: Path) -> None:
    ring = await store_at(tmp_path).load(T0)
    orphan = keys.generate_key()
    (tmp_path / f"{orphan.kid}.pem").write_bytes(orphan.private_pem(PASS))
    (tmp_path / ".tmp-abc").write_bytes(b"half a file")
    reloaded = await store_at(tmp_path).load(T0)
    assert reloaded.describe() == ring.describe()
    assert file_names(tmp_path) == {"keyring.json", ".lock"} | {f"{kid}.pem" for kid in live_kids(ring)}


async def test_current_rereads_after_another_process_rotated(tmp_path: Path) -> None:
    replica_a, replica_b = store_at(tmp_path), store_at(tmp_path)
    ring_a = await replica_a.load(T0)
    assert await replica_a.current() is ring_a  # unchanged file: the cached snapshot
    rotated = await replica_b.rotate(T0 + 600)
    assert (await replica_a.current()).signing_key().kid == rotated.signing_key().kid


async def test_current_loads_an_empty_store_with_its_clock(tmp_path: Path) -> None:
    ring = await store_at(tmp_path).current()
    assert ring.records[0].created_at == T0


async def test_two_processes_rotating_at_once_rotate_once(tmp_path: Path) -> None:
    replica_a, replica_b = store_at(tmp_path), store_at(tmp_path)
    start = await replica_a.load(T0)
    await replica_b.load(T0)
    results = await asyncio.gather(replica_a.rotate_if_due(T0 + 3600), replica_b.rotate_if_due(T0 + 3600))
    assert sum(result is not None for result in results) == 1
    kid_a = (await replica_a.current()).signing_key().kid
    kid_b = (await replica_b.current()).signing_key().kid
    assert kid_a == kid_b != start.signing_key().kid
    doc = json.loads((tmp_path / "keyring.json").read_text())
    assert [k["state"] for k in doc["keys"]].count("active") == 1
    assert [k["state"] for k in doc["keys"]].count("retiring") == 1


async def test_store_repr_hides_the_passphrase(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    await store.load(T0)
    assert PASS.decode() not in repr(store)
    assert "PASS" not in repr(store)


async def test_peek_reads_the_stored_ring_and_changes_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    assert await store_at(directory).peek() is None
    assert not directory.exists()  # no bootstrap, not even the directory
    ring = await store_at(directory).load(T0)
    leftover = directory / ".tmp-left-by-a-crash"
    leftover.write_bytes(b"")
    before = {path.name: path.stat().st_mtime_ns for path in directory.iterdir()}
    peeked = await store_at(directory).peek()
    assert peeked is not None
    assert live_kids(peeked) == live_kids(ring)
    assert {path.name: path.stat().st_mtime_ns for path in directory.iterdir()} == before  # no cleanup either
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        await store_at(directory, passphrase=b"not it").peek()


async def test_regression_an_unusable_directory_is_key_store_unavailable(tmp_path: Path) -> None:
    # Here a file is in the way; in production a directory without permissions or on a read-only disk:
    # the store is unavailable (the issuer answers 503), never a raw OSError (a 500, a traceback).
    blocked = tmp_path / "keys"
    blocked.write_text("not a directory")
    with pytest.raises(keys.KeyStoreUnavailable, match=f"^{blocked}: File exists$") as err:
        await store_at(blocked).load(T0)
    assert err.value.code == "key_store_unavailable"
    assert isinstance(err.value, keys.KeyStoreError)
    with pytest.raises(keys.KeyStoreUnavailable):
        await store_at(blocked).current()
