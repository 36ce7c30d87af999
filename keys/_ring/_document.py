"""The stored form of a key ring: a versioned JSON document of records, and one PKCS#8 PEM per live key."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from keys._algorithms._base import ALGORITHMS
from keys._algorithms._keypair import KeyPair
from keys._errors import KeyMaterialError
from keys._ring._errors import CorruptKeyRing, WrongPassphrase
from keys._ring._keyring import KeyRecord, KeyRing, KeyState

FORMAT_VERSION = 1
# Kids become file names and Redis hash fields: base64url only, so no path can be smuggled in.
_KID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_TIMES = ("activated_at", "retiring_at", "revoked_at")


def encode_ring(ring: KeyRing) -> bytes:
    """The JSON document of a ring's records (no key material)."""
    doc = {"format_version": FORMAT_VERSION, "keys": [record.describe() for record in ring.records]}
    return json.dumps(doc, indent=2, sort_keys=True).encode()


def _time(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CorruptKeyRing(f"{where}: {name} is not a finite number")
    return float(value)


def _optional_time(entry: Mapping[str, Any], name: str, where: str) -> float | None:
    value = entry.get(name)
    return None if value is None else _time(value, name, where)


def _record(entry: Any, where: str) -> KeyRecord:
    if not isinstance(entry, dict):
        raise CorruptKeyRing(f"{where} is not an object")
    kid, alg, state = entry.get("kid"), entry.get("alg"), entry.get("state")
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        raise CorruptKeyRing(f"{where}: kid is missing or not base64url")
    if alg not in ALGORITHMS:
        raise CorruptKeyRing(f"{where}: unsupported alg")
    if state not in set(KeyState):
        raise CorruptKeyRing(f"{where}: unknown state")
    created_at = _time(entry.get("created_at"), "created_at", where)
    activated_at, retiring_at, revoked_at = (_optional_time(entry, name, where) for name in _TIMES)
    return KeyRecord(kid, alg, KeyState(state), created_at, activated_at, retiring_at, revoked_at)


def decode_records(data: bytes | str, source: str) -> tuple[KeyRecord, ...]:
    """The records of a stored ring document; CorruptKeyRing names what is wrong with it."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise CorruptKeyRing(f"{source} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise CorruptKeyRing(f"{source} is not a JSON object")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CorruptKeyRing(f"{source} has an unsupported format_version (expected {FORMAT_VERSION})")
    entries = doc.get("keys")
    if not isinstance(entries, list):
        raise CorruptKeyRing(f"{source} has no list of keys")
    return tuple(_record(entry, f"{source} key #{index}") for index, entry in enumerate(entries))


def load_pem(kid: str, pem: bytes, passphrase: bytes | None) -> KeyPair:
    """The key pair stored for `kid`; WrongPassphrase or CorruptKeyRing, never key bytes, when it fails."""
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in pem
    if encrypted and not passphrase:
        raise WrongPassphrase(f"key {kid} is encrypted and no passphrase was given; set KEYS_PASSPHRASE")
    if not encrypted and passphrase:
        # A plain key where encrypted ones are expected was not written by this store.
        raise WrongPassphrase(f"key {kid} is not encrypted but a passphrase was given")
    try:
        pair = KeyPair.from_pem(pem, passphrase)
    except KeyMaterialError:
        if encrypted:
            raise WrongPassphrase(f"cannot decrypt key {kid}: wrong passphrase (KEYS_PASSPHRASE)") from None
        raise CorruptKeyRing(f"the stored private key {kid} is not a valid PKCS#8 key") from None
    if pair.kid != kid:
        raise CorruptKeyRing(f"the stored private key {kid} is a different key")
    return pair


def build_ring(
    records: tuple[KeyRecord, ...],
    pems: Mapping[str, bytes],
    passphrase: bytes | None,
    known: Mapping[str, KeyPair] | None = None,
) -> KeyRing:
    """A ring from stored records and PEMs; each live record needs its PEM (or a `known` pair)."""
    pairs: dict[str, KeyPair] = {}
    for record in records:
        if not record.live:
            continue
        pem = pems.get(record.kid)
        if pem is None:
            raise CorruptKeyRing(f"the private key of {record.state} key {record.kid} is missing")
        # A kid is the thumbprint of its key, so a pair already decrypted for this kid is the same key.
        cached = (known or {}).get(record.kid)
        pairs[record.kid] = cached if cached is not None else load_pem(record.kid, pem, passphrase)
    return KeyRing(records, pairs)
