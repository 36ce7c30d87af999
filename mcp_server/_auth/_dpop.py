"""DPoP at the MCP server (RFC 9449 §7, the MCP DPoP profile SEP-1932): scheme, proof, binding to `cnf.jkt`.

A token bound to a key (`cnf.jkt`) is accepted only as `Authorization: DPoP <token>` with one `DPoP` header:
a proof of this very request (`htm`, `htu`, `ath` of this token) signed by that key, seen by no replica
before. A bound token presented as `Bearer` is refused (§7.2: no downgrade); with `MCP_REQUIRE_DPOP` an
unbound token is refused too. Each refusal is a typed `DPoPRefusal` the middleware answers in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from keys import DPoPVerifier, NonceSource, ReplayUnavailable, TokenError
from keys import UseDPoPNonce as NonceMissing
from mcp_server._auth._denials import Denial

BEARER = "Bearer"
DPOP = "DPoP"


class DPoPRefusal(Denial):
    """A request refused by the DPoP rules; `error` is the RFC 9449 §7.1 code, `reason` for the audit."""

    code = "dpop_refused"
    status = 401
    error = "invalid_dpop_proof"
    challenge = True
    challenge_scheme = DPOP


class InvalidProof(DPoPRefusal):
    """401 `DPoP error="invalid_dpop_proof"`."""

    code = "invalid_dpop_proof"


class WrongScheme(DPoPRefusal):
    """401 `invalid_token`: a bound token as Bearer, an unbound one as DPoP or where DPoP is required."""

    code = "wrong_token_scheme"
    error = "invalid_token"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        # Tell the client the scheme its token needs: Bearer for an unbound token sent as DPoP, else DPoP.
        self.challenge_scheme = BEARER if reason == "dpop_unbound_token" else DPOP


class NonceRequired(DPoPRefusal):
    """401 `DPoP error="use_dpop_nonce"` with the current nonce in `DPoP-Nonce` (§9)."""

    code = "use_dpop_nonce"
    error = "use_dpop_nonce"

    def __init__(self, reason: str, nonce: str) -> None:
        super().__init__(reason)
        self.nonce = nonce
        self.headers.append((b"dpop-nonce", nonce.encode("ascii")))


class ProofStoreDown(DPoPRefusal):
    """503: the replay or nonce store cannot answer; an outage, never a 401."""

    code = "proof_store_unavailable"
    status = 503
    error = "temporarily_unavailable"
    challenge = False


def bound_key(claims: Mapping[str, Any]) -> str | None:
    """The `cnf.jkt` a verified token is bound to, or None; a malformed `cnf` binds to nothing usable."""
    cnf = claims.get("cnf")
    if cnf is None:
        return None
    jkt = cnf.get("jkt") if isinstance(cnf, Mapping) else None
    # A `cnf` we cannot read must not make a bound token look like a bearer token.
    return jkt if isinstance(jkt, str) and jkt else ""


class ResourceDPoP:
    """The DPoP rules of one MCP resource."""

    def __init__(
        self,
        verifier: DPoPVerifier,
        *,
        resource_url: str,
        required: bool,
        nonces: NonceSource | None = None,
    ) -> None:
        parts = urlsplit(resource_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._verifier = verifier
        self._nonces = nonces
        self.required = required

    @property
    def algorithms(self) -> list[str]:
        return list(self._verifier.algorithms)

    @property
    def algs_param(self) -> str:
        """The `algs` parameter of a DPoP challenge (RFC 9449 §7.1)."""
        return 'algs="' + " ".join(self._verifier.algorithms) + '"'

    async def nonce(self) -> str | None:
        """The current nonce for an answer's `DPoP-Nonce`, when this resource demands nonces."""
        if self._nonces is None:
            return None
        try:
            return await self._nonces.current()
        except ReplayUnavailable:
            return None

    async def check(
        self,
        *,
        scheme: str,
        token: str,
        claims: Mapping[str, Any],
        method: str,
        path: str,
        proofs: Sequence[str],
    ) -> None:
        """Accept the request's credentials or raise the `DPoPRefusal` that fits; `claims` are verified."""
        jkt = bound_key(claims)
        if scheme == BEARER:
            if jkt is not None:
                raise WrongScheme("dpop_bound_token_as_bearer")
            if self.required:
                raise WrongScheme("dpop_required")
            return
        if not jkt:
            raise WrongScheme("dpop_unbound_token")
        if len(proofs) != 1:
            raise InvalidProof("dpop_no_proof" if not proofs else "dpop_repeated")
        try:
            await self._verifier.verify(
                proofs[0], htm=method, htu=self._origin + path, access_token=token, jkt=jkt
            )
        except NonceMissing:
            nonce = await self.nonce()
            if nonce is None:
                raise ProofStoreDown("dpop_nonce_store_unavailable") from None
            raise NonceRequired("dpop_nonce", nonce) from None
        except TokenError as exc:
            raise InvalidProof(f"dpop_{exc.code}") from None
        except ReplayUnavailable as exc:
            raise ProofStoreDown(exc.code) from None
