"""Client key files of a state directory: `$STATE/clients/<client_id>.pem`, PKCS#8, mode 0600."""

from __future__ import annotations

import os
from pathlib import Path

from keys._algorithms._keypair import KeyPair


def client_key_path(state: Path, client_id: str) -> Path:
    return state / "clients" / f"{client_id}.pem"


def load_client_key(state: Path, client_id: str, passphrase: bytes | None = None) -> KeyPair:
    """A client's private key from the state directory (raises OSError or KeyMaterialError)."""
    return KeyPair.from_pem(client_key_path(state, client_id).read_bytes(), passphrase)


def write_private_file(path: Path, data: bytes) -> None:
    """Write a secret atomically, readable by its owner only from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.tmp")
    temp.unlink(missing_ok=True)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
