"""Typed errors of the key ring and its stores, with stable codes.

    KeyRingError                keyring_error   (a `keys.KeysError`)
    ├── UnknownKeyId            unknown_key_id
    ├── NoSigningKey            no_signing_key
    ├── RotationRefused         next_key_too_young
    ├── RevocationRefused       no_next_key
    └── KeyStoreError           key_store
        ├── CorruptKeyRing      corrupt_keyring
        ├── WrongPassphrase     wrong_passphrase
        ├── StoreConflict       store_conflict
        └── KeyStoreUnavailable key_store_unavailable (the store cannot be read or written now)

Messages name kids, algorithms, files and rules; never key material.
"""

from __future__ import annotations

from keys._errors import KeysError


class KeyRingError(KeysError):
    """A key-ring operation was refused; `code` is stable, the message is safe to show an admin."""

    code = "keyring_error"


class UnknownKeyId(KeyRingError, LookupError):
    code = "unknown_key_id"


class NoSigningKey(KeyRingError, LookupError):
    code = "no_signing_key"


class RotationRefused(KeyRingError):
    code = "next_key_too_young"


class RevocationRefused(KeyRingError):
    code = "no_next_key"


class KeyStoreError(KeyRingError):
    code = "key_store"


class CorruptKeyRing(KeyStoreError):
    code = "corrupt_keyring"


class WrongPassphrase(KeyStoreError):
    code = "wrong_passphrase"


class StoreConflict(KeyStoreError):
    code = "store_conflict"


class KeyStoreUnavailable(KeyStoreError):
    code = "key_store_unavailable"
