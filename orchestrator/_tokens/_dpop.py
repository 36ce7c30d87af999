"""The call's DPoP key (RFC 9449): made in memory when a voice call starts, it signs every request's proof.

The private key lives only in this object, for the call's lifetime: it is never written, never logged (the
`repr` names its thumbprint only), never sent. Whoever lifts a token from the call cannot use it without it.
Each server may hand out nonces (`DPoP-Nonce`); the last one seen from each origin goes into the next proof.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from keys import DPOP_ALGORITHMS, DPOP_NONCE_MAX_LENGTH, Algorithm, KeyPair, dpop_proof, generate_key

__all__ = ["CallKey", "nonce_challenge"]

NONCE_HEADER = "dpop-nonce"


def _wall_clock() -> float:
    return time.time()  # looked up per call, so that freezegun moves it


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def nonce_challenge(status: int, headers: Mapping[str, str], error: str | None) -> bool:
    """Whether an answer asks for a proof with the server's nonce (RFC 9449 §8 issuer, §9 resource)."""
    if NONCE_HEADER not in headers:
        return False
    if status == 400:
        return error == "use_dpop_nonce"
    challenge = headers.get("www-authenticate", "")
    return status == 401 and challenge[:5].lower() == "dpop " and 'error="use_dpop_nonce"' in challenge


class CallKey:
    """One voice call's DPoP key, and the nonces its servers handed out."""

    def __init__(self, alg: Algorithm = "ES256", *, clock: Callable[[], float] = _wall_clock) -> None:
        if alg not in DPOP_ALGORITHMS:
            raise ValueError(f"a DPoP key is {' or '.join(DPOP_ALGORITHMS)}")
        self._key: KeyPair = generate_key(alg)
        self._clock = clock
        self._nonces: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"CallKey(jkt={self.jkt!r})"

    @property
    def jkt(self) -> str:
        """The key's RFC 7638 thumbprint: what a token bound to this call names in `cnf.jkt`."""
        return self._key.kid

    def proof(self, method: str, url: str, *, access_token: str | None = None) -> str:
        """A fresh proof for one request, with the last nonce its server gave."""
        return dpop_proof(
            self._key,
            htm=method,
            htu=url,
            now=self._clock(),
            access_token=access_token,
            nonce=self._nonces.get(_origin(url)),
        )

    def learn_nonce(self, url: str, headers: Mapping[str, str]) -> bool:
        """Keep the `DPoP-Nonce` an answer carries; True when it is new."""
        nonce = headers.get(NONCE_HEADER)
        if not nonce or len(nonce) > DPOP_NONCE_MAX_LENGTH or not nonce.isascii() or not nonce.isprintable():
            return False
        origin = _origin(url)
        if self._nonces.get(origin) == nonce:
            return False
        self._nonces[origin] = nonce
        return True
