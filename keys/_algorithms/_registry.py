"""Our algorithms by name, by JWK key type and by key object: the one place an algorithm is chosen."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from keys._algorithms._base import Algorithm, JwsAlgorithm
from keys._algorithms._eddsa import EdDSA
from keys._algorithms._es256 import ES256
from keys._algorithms._rs256 import RS256
from keys._errors import KeyMaterialError

_ALL: tuple[JwsAlgorithm, ...] = (ES256(), RS256(), EdDSA())
BY_NAME: Mapping[str, JwsAlgorithm] = MappingProxyType({a.name: a for a in _ALL})
BY_KTY: Mapping[str, JwsAlgorithm] = MappingProxyType({a.kty: a for a in _ALL})


def by_name(name: Algorithm | str) -> JwsAlgorithm:
    algorithm = BY_NAME.get(name)
    if algorithm is None:
        raise KeyMaterialError(f"unsupported algorithm {name!r}")
    return algorithm


def of_key(key: object) -> JwsAlgorithm:
    """The algorithm of a private or public key object; KeyMaterialError for a type we do not use."""
    for algorithm in _ALL:
        if algorithm.holds(key):
            return algorithm
    raise KeyMaterialError("unsupported key type")
