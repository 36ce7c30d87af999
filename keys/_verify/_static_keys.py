"""A fixed key set from a JWKS document, for configuration-time keys and tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from keys._algorithms._verify_key import VerifyKey
from keys._errors import KeyMaterialError
from keys._verify._verifier import lookup


class StaticKeys:
    """Keys parsed once from a JWKS; an unknown kid stays unknown."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(entries, list):
            raise KeyMaterialError("JWKS has no keys list")
        self._keys = _index(VerifyKey.from_jwk(entry) for entry in entries)

    @classmethod
    def from_keys(cls, keys: Iterable[VerifyKey]) -> StaticKeys:
        instance = cls({"keys": []})
        instance._keys = _index(keys)
        return instance

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def get(self, kid: str | None) -> VerifyKey | None:
        return lookup(self._keys, kid)

    async def fetch_unknown(self, kid: str | None) -> VerifyKey | None:
        return lookup(self._keys, kid)


def _index(keys: Iterable[VerifyKey]) -> dict[str, VerifyKey]:
    index: dict[str, VerifyKey] = {}
    for key in keys:
        if key.kid in index:
            raise KeyMaterialError("JWKS lists a kid twice")
        index[key.kid] = key
    return index
