"""The strict compact-JWS verifier: the key decides the algorithm; the signature is checked before claims."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from keys._algorithms._base import ALGORITHMS
from keys._algorithms._verify_key import VerifyKey
from keys._clock import wall_clock
from keys._errors import (
    Expired,
    ForbiddenHeader,
    InvalidClaim,
    KeysUnavailable,
    LifetimeTooLong,
    MalformedToken,
    MissingClaim,
    NotYetValid,
    TokenTooLarge,
    UnknownKey,
    UnsupportedAlgorithm,
    WrongAudience,
    WrongIssuer,
    WrongTokenType,
)
from keys._jose._compact import b64url_decode, json_object
from keys._verify._policy import VerifyPolicy, normalize_typ

# Headers that would let a token choose its own key, add processing rules, or change what is signed.
FORBIDDEN_HEADERS = frozenset({"jku", "jwk", "x5u", "x5c", "crit", "b64", "zip", "enc"})
MAX_KID = 256
MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z: beyond this a date is an attack, not a date
_VERIFIED_CACHE_SIZE = 4096
_HEADER_CACHE_SIZE = 256
_STRING_CLAIMS = ("iss", "sub", "jti", "client_id", "scope", "sid")
_ALG_SET = frozenset(ALGORITHMS)


class TokenHeader(NamedTuple):
    """A protected header that passed every header rule of a policy; nothing about it is verified yet."""

    alg: str
    kid: str | None
    """None only under a policy with `kid_optional`: the token names no key."""


class _Verified(NamedTuple):
    """A cached verification: the key that checked the signature, the claims, and their dates."""

    key: VerifyKey
    claims: dict[str, Any]
    exp: float
    iat: float
    nbf: float | None


class KeySource(Protocol):
    """Where a verifier finds keys: `get` is a sync lookup, `fetch_unknown` may go to the network.

    A kid of None asks for the source's only key: None when the source holds several (or none), so a token
    without a kid is checked against one key or refused, never tried against each key in turn.
    """

    def get(self, kid: str | None) -> VerifyKey | None: ...

    async def fetch_unknown(self, kid: str | None) -> VerifyKey | None: ...


def lookup(keys: Mapping[str, VerifyKey], kid: str | None) -> VerifyKey | None:
    """How a key source answers `get`: the key of `kid`, or for None the only key it holds."""
    if kid is not None:
        return keys.get(kid)
    if len(keys) != 1:
        return None
    return next(iter(keys.values()))


def _unknown(kid: str | None) -> UnknownKey:
    if kid is None:
        return UnknownKey("token has no kid and the keys hold more than one key")
    return UnknownKey("no known key has this kid")


def _date(claims: dict[str, Any], name: str) -> float:
    value: Any = claims.get(name)
    kind = type(value)
    # type() rather than isinstance: bool is an int. NaN fails both comparisons, infinity the upper one.
    if (kind is int or kind is float) and 0 <= value <= MAX_TIME:
        return float(value)
    if value is None and name not in claims:
        raise MissingClaim(f"claim {name} is missing")
    raise InvalidClaim(f"claim {name} is not a finite date")


class Verifier:
    """Verifies compact JWS tokens against a key source and a policy.

    Every rejection is a `TokenError`; `verify_async` raises `KeysUnavailable` when the key source cannot
    answer at all (an outage, not a bad token).

    `cache_tokens=False` is for single-use tokens (client assertions, session grants): the caller's replay
    check refuses them the second time, so a cached entry would never be read again; it would only push
    reused access tokens out and hold memory until evicted.
    """

    def __init__(
        self,
        keys: KeySource,
        policy: VerifyPolicy,
        *,
        clock: Callable[[], float] = wall_clock,
        cache_tokens: bool = True,
    ) -> None:
        self._keys = keys
        self._policy = policy
        self._clock = clock
        # Header segment -> (alg, kid) for headers that already passed every header rule.
        self._headers: dict[str, TokenHeader] = {}
        # Token -> (the key that verified it, its claims). A client reuses one access token for minutes, so
        # the signature is checked once per token; the dates are checked on every use, and a hit counts only
        # while the source still holds that very key (a dropped or revoked kid ends it). Full, it forgets its
        # oldest entry per insert: clearing it all at once would make every live token pay a full verify
        # together (a latency cliff every 4096 new tokens).
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        self._cache_tokens = cache_tokens

    @property
    def policy(self) -> VerifyPolicy:
        return self._policy

    def check_header(self, token: str) -> TokenHeader:
        """The `alg` and `kid` of a token whose header passes every header rule of the policy.

        The size cap, the compact form, forbidden members, the algorithm allowlist, `typ` and `kid` are
        checked; the signature and the claims are not, so the kid may only choose where to look for a key
        (a client registry finding the client that claims to have signed), never be trusted. The kid is None
        only when the policy has `kid_optional` and the header has none.
        """
        parts = self._split(token)
        return self._headers.get(parts[0]) or self._parse_header(parts[0])

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token signed by a key the source already knows."""
        parts = self._split(token)
        header = self._headers.get(parts[0]) or self._parse_header(parts[0], remember=False)
        key = self._keys.get(header.kid)
        if key is None:
            raise _unknown(header.kid)
        self._remember(parts[0], header)
        return self._finish(token, parts, header.alg, key)

    async def verify_async(self, token: str) -> dict[str, Any]:
        """Like `verify`, but an unknown kid makes the key source refetch (rate-limited) once."""
        parts = self._split(token)
        header = self._headers.get(parts[0]) or self._parse_header(parts[0], remember=False)
        try:
            key = self._keys.get(header.kid)
        except KeysUnavailable:
            key = None
        if key is None:
            key = await self._keys.fetch_unknown(header.kid)
            if key is None:
                raise _unknown(header.kid)
        self._remember(parts[0], header)
        return self._finish(token, parts, header.alg, key)

    def _split(self, token: str) -> list[str]:
        if type(token) is not str:
            raise MalformedToken("token is not a string")
        if len(token) > self._policy.max_size:
            raise TokenTooLarge("token exceeds the size limit")
        if not token.isascii():
            raise MalformedToken("token is not ASCII")
        parts = token.split(".")
        if len(parts) != 3:
            raise MalformedToken("token is not a compact JWS")
        return parts

    def _parse_header(self, header_seg: str, *, remember: bool = True) -> TokenHeader:
        header = json_object(b64url_decode(header_seg), strict=True)
        forbidden = FORBIDDEN_HEADERS & header.keys()
        if forbidden:
            raise ForbiddenHeader(f"header {min(forbidden)} is not allowed")
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise MalformedToken("header alg is missing")
        if alg not in _ALG_SET:
            raise UnsupportedAlgorithm("header alg is not an allowed algorithm")
        typ = header.get("typ")
        if typ is None and "typ" not in header and self._policy.typ_optional:
            pass
        elif not isinstance(typ, str) or normalize_typ(typ) != self._policy.normalized_typ:
            raise WrongTokenType("header typ is not the expected type")
        kid = header.get("kid")
        if kid is None and "kid" not in header and self._policy.kid_optional:
            pass
        elif not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID or not kid.isprintable():
            raise MalformedToken("header kid is missing or invalid")
        checked = TokenHeader(alg, kid)
        if remember:
            self._remember(header_seg, checked)
        return checked

    def _remember(self, header_seg: str, header: TokenHeader) -> None:
        """Cache a checked header. `verify` only calls this once the kid named a known key: tokens with
        random kids (a storm) would otherwise clear the cache again and again, and valid tokens pay for it."""
        if header_seg in self._headers:
            return
        if len(self._headers) >= _HEADER_CACHE_SIZE:
            # Clearing (not evicting one) keeps the cache bounded and safe without a lock.
            self._headers.clear()
        self._headers[header_seg] = header

    def _finish(self, token: str, parts: list[str], alg: str, key: VerifyKey) -> dict[str, Any]:
        if alg != key.alg:
            raise UnsupportedAlgorithm("header alg is not the key's algorithm")
        cached = self._verified.get(token)
        if cached is not None and cached.key is key:
            # Everything but the clock was checked when the token was cached, and its claims cannot change.
            self._check_time(cached.exp, cached.iat, cached.nbf)
            return dict(cached.claims)
        signature = b64url_decode(parts[2])
        key.check_signature(token[: len(token) - len(parts[2]) - 1].encode("ascii"), signature)
        # Duplicate members matter before trust (the header); a verified payload is the signer's own words.
        claims = json_object(b64url_decode(parts[1]), strict=False)
        exp, iat, nbf = self._check_claims(claims)
        if not self._cache_tokens:
            return claims  # freshly parsed and kept nowhere: the caller's own
        verified = self._verified
        verified[token] = _Verified(key, claims, exp, iat, nbf)
        if len(verified) > _VERIFIED_CACHE_SIZE:
            verified.popitem(last=False)
        return dict(claims)

    def _check_claims(self, claims: dict[str, Any]) -> tuple[float, float, float | None]:
        """Check every claim rule; the dates, for a cache hit to check against the clock again."""
        policy = self._policy
        if not policy.claims_required <= claims.keys():
            missing = min(policy.claims_required - claims.keys())
            raise MissingClaim(f"claim {missing} is missing")
        for name in _STRING_CLAIMS:
            value = claims.get(name)
            if type(value) is not str and (value is not None or name in claims):
                raise InvalidClaim(f"claim {name} is not a string")
        if claims["iss"] != policy.issuer:
            raise WrongIssuer("iss is not the expected issuer")
        aud = claims["aud"]
        if aud != policy.audience and not (type(aud) is list and policy.audience in aud):
            raise WrongAudience("aud does not name this audience")
        exp = _date(claims, "exp")
        iat = _date(claims, "iat")
        nbf = _date(claims, "nbf") if "nbf" in claims else None
        self._check_time(exp, iat, nbf)
        if exp <= iat:
            raise InvalidClaim("exp is not after iat")
        if exp - iat > policy.max_lifetime:
            raise LifetimeTooLong("token lifetime exceeds the limit")
        return exp, iat, nbf

    def _check_time(self, exp: float, iat: float, nbf: float | None) -> None:
        now = self._clock()
        leeway = self._policy.leeway
        if iat > now + leeway:
            raise NotYetValid("iat is in the future")
        if nbf is not None and nbf > now + leeway:
            raise NotYetValid("nbf is in the future")
        if exp <= now - leeway:
            raise Expired("token has expired")
