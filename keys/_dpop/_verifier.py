"""The strict DPoP proof verifier (RFC 9449 §4.3): every rule, then the nonce, then the `jti` spent once."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from keys._algorithms._base import ALGORITHMS
from keys._algorithms._keypair import thumbprint
from keys._algorithms._verify_key import PRIVATE_MEMBERS, VerifyKey
from keys._clock import wall_clock
from keys._dpop._htu import normalize_htu
from keys._dpop._nonce import DPOP_NONCE_MAX_LENGTH, NonceSource
from keys._dpop._proof import DPOP_ALGORITHMS, DPOP_TYP, access_token_hash
from keys._errors import (
    Expired,
    ForbiddenHeader,
    InvalidClaim,
    KeyMaterialError,
    MalformedToken,
    MissingClaim,
    NotYetValid,
    ProofReplayed,
    TokenTooLarge,
    UnsupportedAlgorithm,
    UseDPoPNonce,
    WrongMethod,
    WrongProofKey,
    WrongTokenHash,
    WrongTokenType,
    WrongUri,
)
from keys._jose._compact import b64url_decode, json_object
from keys._replay._cache import ReplayCache
from keys._timing import CLOCK_LEEWAY
from keys._verify._policy import normalize_typ
from keys._verify._verifier import FORBIDDEN_HEADERS, MAX_TIME

MAX_PROOF_SIZE = 2048
MAX_JTI = 64
_PROOF_HEADERS_REFUSED = FORBIDDEN_HEADERS - {"jwk"}  # the proof's own key is the point of a proof
_HEADER_CACHE_SIZE = 256
_ATH_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class DPoPProof:
    """A verified proof: `jkt` is the RFC 7638 thumbprint of its key, the value a token's `cnf.jkt` binds."""

    jkt: str
    jti: str
    iat: float
    nonce: str | None


@dataclass(frozen=True, slots=True)
class _Header:
    key: VerifyKey
    jkt: str


def _proof_key(header: Mapping[str, Any], alg: str) -> _Header:
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise MalformedToken("header jwk is missing or not an object")
    if PRIVATE_MEMBERS & jwk.keys():
        raise ForbiddenHeader("header jwk carries a private key")
    try:
        key = VerifyKey.from_jwk(jwk)
    except KeyMaterialError as exc:
        raise MalformedToken(f"header jwk is not a usable public key: {exc}") from None
    if key.alg != alg:
        raise UnsupportedAlgorithm("header alg is not the algorithm of the jwk's key")
    canonical = key.algorithm.public_members(key.public_key)
    if any(jwk.get(name) != value for name, value in canonical.items()):
        # One key, one thumbprint: a shortened coordinate would bind the same key under another jkt.
        raise MalformedToken("header jwk is not in its canonical form")
    return _Header(key, thumbprint(canonical))


def _claims(payload: bytes) -> dict[str, Any]:
    """A proof's claims: a JSON object, parsed after the signature (the claims are the signer's words).

    orjson parses the few hundred bytes of a proof several times faster than json; it refuses NaN, infinity
    and integers beyond 64 bits, and nesting deeper than 1024, which the size cap keeps far away anyway.
    """
    try:
        claims = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise MalformedToken("claims are not JSON") from None
    if type(claims) is not dict:
        raise MalformedToken("claims are not a JSON object")
    return claims


def _string(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if value is None and name not in claims:
        raise MissingClaim(f"claim {name} is missing")
    if type(value) is not str or not value:
        raise InvalidClaim(f"claim {name} is not a non-empty string")
    return value


class DPoPVerifier:
    """Verifies the DPoP proofs one receiver gets; every rejection is a `keys.TokenError`.

    `check` applies every rule of RFC 9449 §4.3 that needs no state; `verify` adds the receiver's nonce (when
    it demands one) and spends the proof's `jti` in the replay cache, shared by the receiver's replicas.
    """

    def __init__(
        self,
        replay: ReplayCache,
        *,
        nonces: NonceSource | None = None,
        clock: Callable[[], float] = wall_clock,
        algorithms: Collection[str] = DPOP_ALGORITHMS,
        max_size: int = MAX_PROOF_SIZE,
        prefix: str = "dpop",
    ) -> None:
        unknown = set(algorithms) - set(DPOP_ALGORITHMS)
        if unknown or not algorithms:
            raise ValueError(f"DPoP proof algorithms are a non-empty subset of {DPOP_ALGORITHMS}")
        self._replay = replay
        self._nonces = nonces
        self._clock = clock
        self._algorithms = frozenset(algorithms) & frozenset(ALGORITHMS)
        self._max_size = max_size
        self._prefix = prefix
        # Header segment -> its key. A client signs every proof of a call with one key, so the JWK import
        # (a point check) and the thumbprint run once per key, not once per request.
        self._headers: dict[str, _Header] = {}
        # Access token -> its `ath`: a client sends one token with many proofs, so it is hashed once.
        self._ath: dict[str, bytes] = {}

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms accepted, for `dpop_signing_alg_values_supported` and the `algs` challenge."""
        return tuple(alg for alg in DPOP_ALGORITHMS if alg in self._algorithms)

    @property
    def requires_nonce(self) -> bool:
        return self._nonces is not None

    async def verify(
        self,
        proof: str,
        *,
        htm: str,
        htu: str,
        access_token: str | None = None,
        jkt: str | None = None,
    ) -> DPoPProof:
        """A proof valid for this request, with the receiver's nonce, never seen before."""
        checked = self.check(proof, htm=htm, htu=htu, access_token=access_token, jkt=jkt)
        if self._nonces is not None and (
            checked.nonce is None or not await self._nonces.accepts(checked.nonce)
        ):
            raise UseDPoPNonce("the proof lacks the current nonce")
        # Spent last, so a refused proof takes no room; kept while a replica with a slower clock accepts it.
        expires_at = checked.iat + 2 * CLOCK_LEEWAY
        if not await self._replay.first_use(f"{self._prefix}:{checked.jkt}:{checked.jti}", expires_at):
            raise ProofReplayed("the proof's jti was already used")
        return checked

    def check(
        self,
        proof: str,
        *,
        htm: str,
        htu: str,
        access_token: str | None = None,
        jkt: str | None = None,
    ) -> DPoPProof:
        """Every stateless rule: form, header, signature, `htm`, `htu`, `iat`, `jti`, `ath`, the key's `jkt`.

        `htu` is the receiver's own URI of the request; `access_token` (at a resource server) demands `ath`;
        `jkt` (a bound token or refresh family) demands that very key.
        """
        if type(proof) is not str:
            raise MalformedToken("proof is not a string")
        if len(proof) > self._max_size:
            raise TokenTooLarge("proof exceeds the size limit")
        if not proof.isascii():
            raise MalformedToken("proof is not ASCII")
        parts = proof.split(".")
        if len(parts) != 3:
            raise MalformedToken("proof is not a compact JWS")
        header = self._headers.get(parts[0]) or self._parse_header(parts[0])
        signature = b64url_decode(parts[2])
        header.key.check_signature(proof[: len(proof) - len(parts[2]) - 1].encode("ascii"), signature)
        claims = _claims(b64url_decode(parts[1]))
        jti = _string(claims, "jti")
        if len(jti) > MAX_JTI:
            raise InvalidClaim(f"claim jti is longer than {MAX_JTI} characters")
        if _string(claims, "htm") != htm:
            raise WrongMethod("htm is not the request's method")
        claimed_htu = _string(claims, "htu")
        # The exact URI a client copies from its request is the common case and needs no normalising.
        if claimed_htu != htu or "?" in htu or "#" in htu:
            try:
                if normalize_htu(claimed_htu) != normalize_htu(htu):
                    raise WrongUri("htu is not the request's URI")
            except ValueError as exc:
                raise WrongUri(f"htu is not a plain request URI: {exc}") from None
        iat = self._iat(claims)
        if access_token is not None:
            ath = _string(claims, "ath")
            if not hmac.compare_digest(ath.encode(), self._token_hash(access_token)):
                raise WrongTokenHash("ath is not the hash of the presented access token")
        if jkt is not None and header.jkt != jkt:  # thumbprints are public: no need for constant time
            raise WrongProofKey("the proof is signed by another key than the one bound")
        nonce = claims.get("nonce")
        if nonce is not None and (type(nonce) is not str or not 0 < len(nonce) <= DPOP_NONCE_MAX_LENGTH):
            raise InvalidClaim("claim nonce is not a short string")
        return DPoPProof(header.jkt, jti, iat, nonce)

    def _token_hash(self, access_token: str) -> bytes:
        ath = self._ath.get(access_token)
        if ath is None:
            if len(self._ath) >= _ATH_CACHE_SIZE:
                self._ath.clear()  # bounded, like the header cache
            ath = self._ath[access_token] = access_token_hash(access_token).encode()
        return ath

    def _iat(self, claims: Mapping[str, Any]) -> float:
        value: Any = claims.get("iat")
        if value is None and "iat" not in claims:
            raise MissingClaim("claim iat is missing")
        if type(value) not in (int, float) or not 0 <= value <= MAX_TIME:
            raise InvalidClaim("claim iat is not a finite date")
        now = self._clock()
        if value > now + CLOCK_LEEWAY:
            raise NotYetValid("the proof was made in the future")
        if value < now - CLOCK_LEEWAY:
            raise Expired("the proof is too old")
        return float(value)

    def _parse_header(self, segment: str) -> _Header:
        header = json_object(b64url_decode(segment), strict=True)
        refused = _PROOF_HEADERS_REFUSED & header.keys()
        if refused:
            raise ForbiddenHeader(f"header {min(refused)} is not allowed")
        typ = header.get("typ")
        if not isinstance(typ, str) or normalize_typ(typ) != DPOP_TYP:
            raise WrongTokenType("header typ is not dpop+jwt")
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise MalformedToken("header alg is missing")
        if alg not in self._algorithms:
            raise UnsupportedAlgorithm("header alg is not an allowed proof algorithm")
        parsed = _proof_key(header, alg)
        if len(self._headers) >= _HEADER_CACHE_SIZE:
            self._headers.clear()  # bounded and lock-free, like the token verifier's header cache
        self._headers[segment] = parsed
        return parsed
