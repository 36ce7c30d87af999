"""Tokens without `kid` under `VerifyPolicy(kid_optional=True)`: the source's only key, or a refusal.

A missing kid never makes the verifier try several keys: with two keys in the source the token is refused
before any signature is checked.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest

from keys import (
    BadSignature,
    KeyPair,
    MalformedToken,
    StaticKeys,
    TokenHeader,
    TokenTooLarge,
    UnknownKey,
    UnsupportedAlgorithm,
    Verifier,
    VerifyKey,
    VerifyPolicy,
    generate_key,
    unverified_claims,
)
from keys._jose._sign import signature_bytes
from tests.support.clock import FakeClock

NOW = 1_800_000_000.0
STRICT = VerifyPolicy("client-a", "https://issuer.test/token", typ="JWT")
LENIENT = dataclasses.replace(STRICT, kid_optional=True)


@dataclasses.dataclass(frozen=True)
class CountingKey(VerifyKey):
    """A real verification key that counts its signature checks."""

    counter: list[int] = dataclasses.field(default_factory=lambda: [0], compare=False)

    def check_signature(self, signing_input: bytes, signature: bytes) -> None:
        self.counter[0] += 1
        super().check_signature(signing_input, signature)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(key: KeyPair, **header: Any) -> str:
    claims = {
        "iss": "client-a",
        "sub": "client-a",
        "aud": STRICT.audience,
        "jti": "j",
        "iat": NOW,
        "exp": NOW + 60,
    }
    head = json.dumps({"alg": key.alg, "typ": "JWT", **header}).encode()
    signing_input = f"{b64(head)}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(signature_bytes(key, signing_input.encode()))}"


def counting(pair: KeyPair) -> CountingKey:
    return CountingKey(pair.kid, pair.alg, pair.public_key())


@pytest.fixture(scope="module")
def pairs() -> list[KeyPair]:
    return [generate_key("ES256"), generate_key("ES256")]


def verifier(policy: VerifyPolicy, *keys: VerifyKey) -> Verifier:
    return Verifier(StaticKeys.from_keys(keys), policy, clock=FakeClock(NOW))


def test_a_strict_policy_still_demands_a_kid(pairs: list[KeyPair]) -> None:
    with pytest.raises(MalformedToken):
        verifier(STRICT, counting(pairs[0])).verify(forge(pairs[0]))


async def test_the_only_key_verifies_a_token_without_kid(pairs: list[KeyPair]) -> None:
    only = verifier(LENIENT, counting(pairs[0]))
    token = forge(pairs[0])
    assert only.check_header(token) == TokenHeader("ES256", None)
    assert only.verify(token)["sub"] == "client-a"
    assert (await only.verify_async(token))["sub"] == "client-a"
    with pytest.raises(BadSignature):
        only.verify(forge(pairs[1]))


async def test_two_keys_refuse_a_token_without_kid_before_any_signature_check(pairs: list[KeyPair]) -> None:
    keys = [counting(pair) for pair in pairs]
    both = verifier(LENIENT, *keys)
    for pair in pairs:
        with pytest.raises(UnknownKey, match="no kid"):
            both.verify(forge(pair))
        with pytest.raises(UnknownKey, match="no kid"):
            await both.verify_async(forge(pair))
    assert [key.counter[0] for key in keys] == [0, 0]
    # With its kid each token verifies, against its own key only.
    for pair, key in zip(pairs, keys, strict=True):
        assert both.verify(forge(pair, kid=pair.kid))
        assert key.counter[0] == 1
    with pytest.raises(UnknownKey):
        verifier(LENIENT).verify(forge(pairs[0]))  # no key at all


@pytest.mark.parametrize("kid", ["", 7, None, "k" * 300, "line\nbreak"])
def test_a_present_kid_must_still_be_well_formed(pairs: list[KeyPair], kid: Any) -> None:
    # `kid_optional` accepts an absent kid, not a null or empty one.
    with pytest.raises(MalformedToken):
        verifier(LENIENT, counting(pairs[0])).verify(forge(pairs[0], kid=kid))


def test_the_only_keys_algorithm_still_decides(pairs: list[KeyPair]) -> None:
    ed = generate_key("EdDSA")
    with pytest.raises(UnsupportedAlgorithm):
        verifier(LENIENT, counting(pairs[0])).verify(forge(ed))


def test_static_keys_answer_none_with_their_only_key() -> None:
    one, two = generate_key("ES256"), generate_key("RS256")
    assert StaticKeys({"keys": [one.public_jwk()]}).get(None) == VerifyKey.from_jwk(one.public_jwk())
    assert StaticKeys({"keys": [one.public_jwk(), two.public_jwk()]}).get(None) is None
    assert StaticKeys({"keys": []}).get(None) is None


def test_unverified_claims_are_bounded_and_unambiguous(pairs: list[KeyPair]) -> None:
    assert unverified_claims(forge(pairs[0]))["sub"] == "client-a"
    with pytest.raises(TokenTooLarge):
        unverified_claims("e30." + "a" * 9000 + ".c2ln")
    for bad in ("e30", "e30.e30", "e30.e30.e30.e30", "e30.!!.c2ln", f"e30.{b64(b'[1]')}.c2ln"):
        with pytest.raises(MalformedToken):
            unverified_claims(bad)
    duplicated = b64(b'{"sub":"a","sub":"b"}')
    with pytest.raises(MalformedToken):
        unverified_claims(f"e30.{duplicated}.c2ln")
