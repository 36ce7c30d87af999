"""DPoP at the issuer (RFC 9449 §5, §8): the proof of a request, the key it binds, the issuer's nonces.

A `/token` or `/bc-authorize` request may carry one `DPoP` header. A valid proof binds what the request
gets to the proof's key: the access token's `cnf.jkt`, and at the token exchange the whole refresh-token
family, whose every later request must then prove possession of that same key. A client registered with
`dpop_bound_access_tokens` must prove on every request. With `DPOP_NONCE=required` a proof must carry the
issuer's current nonce; every answer carries it in `DPoP-Nonce`.
"""

from __future__ import annotations

from collections.abc import Sequence

from issuer._oauth._clients import Client
from issuer._oauth._errors import InvalidDPoPProof, TemporarilyUnavailable, UseDPoPNonce
from keys import DPoPProof, DPoPVerifier, NonceSource, ReplayUnavailable, TokenError
from keys import UseDPoPNonce as NonceMissing

NONCE_HEADER = "DPoP-Nonce"


class DPoPGate:
    """Checks the DPoP proof of an issuer request and says which key, if any, the answer is bound to."""

    def __init__(self, verifier: DPoPVerifier, nonces: NonceSource | None = None) -> None:
        self._verifier = verifier
        self._nonces = nonces

    @property
    def algorithms(self) -> list[str]:
        """`dpop_signing_alg_values_supported`."""
        return list(self._verifier.algorithms)

    async def nonce_headers(self) -> dict[str, str]:
        """The current nonce for an answer's headers, when the issuer demands nonces."""
        if self._nonces is None:
            return {}
        try:
            return {NONCE_HEADER: await self._nonces.current()}
        except ReplayUnavailable:
            return {}  # the answer itself stands; the next request is challenged once the store is back

    async def proof(self, values: Sequence[str], *, htu: str, client: Client) -> DPoPProof | None:
        """The request's valid proof, None when it has none and needs none; an OAuthError otherwise."""
        if len(values) > 1:
            raise InvalidDPoPProof("send at most one DPoP header", reason="dpop_repeated")
        if not values:
            if client.dpop_bound_access_tokens:
                raise InvalidDPoPProof(
                    "this client must send a DPoP proof with every request", reason="dpop_required"
                )
            return None
        try:
            return await self._verifier.verify(values[0], htm="POST", htu=htu)
        except NonceMissing:
            nonce = await self._current_nonce()
            raise UseDPoPNonce(
                "the DPoP proof must carry the nonce of the DPoP-Nonce header",
                nonce=nonce,
                reason="dpop_nonce",
            ) from None
        except TokenError as exc:
            raise InvalidDPoPProof("the DPoP proof is invalid", reason=f"dpop_{exc.code}") from None
        except ReplayUnavailable as exc:
            raise TemporarilyUnavailable(
                "the issuer's store is unavailable; retry later", reason=exc.code
            ) from None

    async def _current_nonce(self) -> str:
        if self._nonces is None:  # only a verifier built with the gate's nonces demands one
            raise InvalidDPoPProof("the DPoP proof is invalid", reason="dpop_nonce_unexpected")
        try:
            return await self._nonces.current()
        except ReplayUnavailable as exc:
            raise TemporarilyUnavailable(
                "the issuer's store is unavailable; retry later", reason=exc.code
            ) from None


def require_key(proof: DPoPProof | None, jkt: str | None) -> None:
    """A request of a refresh family bound to `jkt` must prove possession of that very key.

    Refused before anything is spent: a thief without the key changes nothing, and the family stays usable
    for its owner.
    """
    if jkt is None:
        return
    if proof is None:
        raise InvalidDPoPProof(
            "this refresh token is bound to a DPoP key: send a proof by that key",
            reason="dpop_family_unproved",
        )
    if proof.jkt != jkt:
        raise InvalidDPoPProof(
            "the DPoP proof is not signed by the key this refresh token is bound to",
            reason="dpop_family_wrong_key",
        )
