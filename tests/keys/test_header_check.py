"""`Verifier.check_header`: every header rule, without a key lookup, for code that must pick a key first."""

from __future__ import annotations

import base64
import json

import pytest

import keys
from keys import (
    ForbiddenHeader,
    MalformedToken,
    StaticKeys,
    TokenHeader,
    TokenTooLarge,
    UnsupportedAlgorithm,
    Verifier,
    VerifyPolicy,
    WrongTokenType,
)

POLICY = VerifyPolicy("https://issuer.example", "https://issuer.example/token", typ="JWT", max_size=4096)


def segment(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def token(header: dict[str, object]) -> str:
    return f"{segment(header)}.{segment({'sub': 'x'})}.c2ln"


@pytest.fixture
def verifier() -> Verifier:
    # No key at all: a header check never needs one.
    return Verifier(StaticKeys.from_keys([]), POLICY)


def test_a_good_header_names_its_alg_and_kid(verifier: Verifier) -> None:
    key = keys.generate_key("EdDSA")
    signed = keys.sign({"sub": "x"}, key, typ="JWT")
    assert verifier.check_header(signed) == TokenHeader("EdDSA", key.kid)
    assert verifier.check_header(signed).kid == key.kid  # the cached answer is the same


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ({"alg": "ES256", "typ": "JWT", "kid": "k", "jku": "https://evil.example"}, ForbiddenHeader),
        ({"alg": "ES256", "typ": "JWT", "kid": "k", "jwk": {}}, ForbiddenHeader),
        ({"alg": "HS256", "typ": "JWT", "kid": "k"}, UnsupportedAlgorithm),
        ({"alg": "none", "typ": "JWT", "kid": "k"}, UnsupportedAlgorithm),
        ({"alg": "ES256", "typ": "at+jwt", "kid": "k"}, WrongTokenType),
        ({"alg": "ES256", "typ": "JWT"}, MalformedToken),
        ({"alg": "ES256", "typ": "JWT", "kid": ""}, MalformedToken),
    ],
)
def test_every_header_rule_applies(
    verifier: Verifier, header: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        verifier.check_header(token(header))


def test_size_and_form_apply_too(verifier: Verifier) -> None:
    with pytest.raises(TokenTooLarge):
        verifier.check_header("a" * 4097)
    with pytest.raises(MalformedToken):
        verifier.check_header("only.two")
