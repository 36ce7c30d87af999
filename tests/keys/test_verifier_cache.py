"""The verified-token cache: one signature check per token, dates on every use, nothing after a key goes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from keys import (
    BadSignature,
    Expired,
    KeyPair,
    NotYetValid,
    UnknownKey,
    Verifier,
    VerifyKey,
    VerifyPolicy,
    generate_key,
    sign,
)
from tests.support.clock import FakeClock

POLICY = VerifyPolicy(issuer="https://issuer.test", audience="https://mcp.test/mcp")
NOW = 1_800_000_000.0


@dataclasses.dataclass(frozen=True)
class CountingKey(VerifyKey):
    """A real verification key that counts its signature checks."""

    counter: list[int] = dataclasses.field(default_factory=lambda: [0], compare=False)

    def check_signature(self, signing_input: bytes, signature: bytes) -> None:
        self.counter[0] += 1
        super().check_signature(signing_input, signature)


class Keys:
    """A key source the test changes: keys come and go."""

    def __init__(self, *keys: VerifyKey) -> None:
        self.keys = {key.kid: key for key in keys}

    def get(self, kid: str) -> VerifyKey | None:
        return self.keys.get(kid)

    async def fetch_unknown(self, kid: str) -> VerifyKey | None:
        return self.keys.get(kid)


def token(pair: KeyPair, **changes: Any) -> str:
    claims = {
        "iss": POLICY.issuer,
        "aud": POLICY.audience,
        "sub": "alice",
        "jti": "j1",
        "iat": NOW,
        "exp": NOW + 300,
    }
    return sign({**claims, **changes}, pair, typ="at+jwt")


@pytest.fixture
def pair() -> KeyPair:
    return generate_key("ES256")


def counting(pair: KeyPair) -> CountingKey:
    base = VerifyKey.from_jwk(pair.public_jwk())
    return CountingKey(base.kid, base.alg, base.public_key)


def test_a_token_is_signature_checked_once_and_its_dates_every_time(pair: KeyPair) -> None:
    key, clock = counting(pair), FakeClock(NOW)
    verifier = Verifier(Keys(key), POLICY, clock=clock)
    jwt = token(pair)
    first = verifier.verify(jwt)
    first["sub"] = "mallory"  # callers get copies: the cached claims stay the signer's
    assert verifier.verify(jwt)["sub"] == "alice"
    assert key.counter[0] == 1
    clock.now += 300 + 61
    with pytest.raises(Expired):
        verifier.verify(jwt)


def test_a_cached_token_meets_its_iat_and_nbf_again_on_every_use(pair: KeyPair) -> None:
    key, clock = counting(pair), FakeClock(NOW + 100)
    verifier = Verifier(Keys(key), POLICY, clock=clock)
    with_nbf = token(pair, nbf=NOW + 50)
    plain = token(pair, jti="j2")
    verifier.verify(with_nbf)
    verifier.verify(plain)
    clock.now = NOW + 50 - POLICY.leeway - 1  # the clock stepped back: nbf is ahead again, iat is not
    with pytest.raises(NotYetValid, match="nbf"):
        verifier.verify(with_nbf)
    assert verifier.verify(plain)["jti"] == "j2"
    clock.now = NOW - POLICY.leeway - 1
    with pytest.raises(NotYetValid, match="iat"):
        verifier.verify(plain)
    assert key.counter[0] == 2  # every refusal above came from the cached entries


async def test_a_cached_token_stops_verifying_when_its_key_is_dropped(pair: KeyPair) -> None:
    key = counting(pair)
    source = Keys(key)
    verifier = Verifier(source, POLICY, clock=FakeClock(NOW))
    jwt = token(pair)
    assert (await verifier.verify_async(jwt))["sub"] == "alice"
    del source.keys[key.kid]
    with pytest.raises(UnknownKey):
        await verifier.verify_async(jwt)


def test_a_re_imported_key_checks_the_signature_again(pair: KeyPair) -> None:
    key = counting(pair)
    source = Keys(key)
    verifier = Verifier(source, POLICY, clock=FakeClock(NOW))
    jwt = token(pair)
    verifier.verify(jwt)
    again = counting(pair)
    source.keys[again.kid] = again  # same kid, another object (a refetched JWKS)
    verifier.verify(jwt)
    assert again.counter[0] == 1


def test_a_tampered_twin_of_a_cached_token_is_refused(pair: KeyPair) -> None:
    verifier = Verifier(Keys(counting(pair)), POLICY, clock=FakeClock(NOW))
    jwt = token(pair)
    verifier.verify(jwt)
    header, _payload, signature = jwt.split(".")
    forged = ".".join((header, token(pair, sub="mallory").split(".")[1], signature))
    with pytest.raises(BadSignature):
        verifier.verify(forged)


def test_a_single_use_verifier_leaves_its_cache_as_it_was(pair: KeyPair) -> None:
    key = counting(pair)
    verifier = Verifier(Keys(key), POLICY, clock=FakeClock(NOW), cache_tokens=False)
    jwt = token(pair)
    assert verifier.verify(jwt)["sub"] == "alice"
    assert verifier._verified == {}  # the only way to observe it: the cache itself
    assert verifier.verify(jwt)["sub"] == "alice"
    assert key.counter[0] == 2  # every verification is a full one


def test_the_cache_stays_bounded_and_keeps_the_newest_tokens_after_overflow(pair: KeyPair) -> None:
    key = counting(pair)
    verifier = Verifier(Keys(key), POLICY, clock=FakeClock(NOW))
    bound = 4096
    tokens = [token(pair, jti=f"j{n}") for n in range(bound + 100)]
    for jwt in tokens:
        verifier.verify(jwt)
        assert len(verifier._verified) <= bound
    assert list(verifier._verified) == tokens[100:]  # oldest-first eviction, never a full clear
    checks = key.counter[0]
    for jwt in tokens[-bound:]:
        verifier.verify(jwt)
    assert key.counter[0] == checks  # the newest tokens are all still served from the cache
    verifier.verify(tokens[0])
    assert key.counter[0] == checks + 1
    assert list(verifier._verified)[-1] == tokens[0]
    assert len(verifier._verified) == bound
