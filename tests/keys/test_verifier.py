"""The strict verifier: every token of the rejection list fails with its typed error, valid ones pass."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from freezegun import freeze_time
from joserfc import jwt as jose_jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

import keys
from keys import (
    BadSignature,
    Expired,
    ForbiddenHeader,
    InvalidClaim,
    KeyPair,
    LifetimeTooLong,
    MalformedToken,
    MissingClaim,
    NotYetValid,
    StaticKeys,
    TokenError,
    TokenTooLarge,
    UnknownKey,
    UnsupportedAlgorithm,
    Verifier,
    VerifyPolicy,
    WrongAudience,
    WrongIssuer,
    WrongTokenType,
)
from keys._jose._sign import signature_bytes
from tests.support.clock import FakeClock

JOSE_KEYS: dict[str, Any] = {"ES256": ECKey, "RS256": RSAKey, "EdDSA": OKPKey}
ISSUER = "http://127.0.0.1:8000"
AUDIENCE = "http://127.0.0.1:8001/mcp"
NOW = 1_700_000_000.0
POLICY = VerifyPolicy(ISSUER, AUDIENCE, required=frozenset({"sub", "jti", "client_id", "scope"}))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def forge(header: dict[str, Any], claims: dict[str, Any] | str, key: KeyPair) -> str:
    """A token with an arbitrary header, correctly signed by `key`."""
    payload = claims if isinstance(claims, str) else segment(claims)
    signing_input = f"{segment(header)}.{payload}"
    return f"{signing_input}.{b64(signature_bytes(key, signing_input.encode()))}"


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": AUDIENCE,
        "exp": NOW + 300,
        "iat": NOW,
        "nbf": NOW,
        "jti": "j-1",
        "client_id": "orchestrator",
        "scope": "read",
        "sid": "room-1",
        "act": {"sub": "orchestrator"},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


@pytest.fixture(scope="module")
def key_pairs() -> dict[str, KeyPair]:
    return {alg: keys.generate_key(alg) for alg in keys.ALGORITHMS}


@pytest.fixture(scope="module")
def es(key_pairs: dict[str, KeyPair]) -> KeyPair:
    return key_pairs["ES256"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def verifier(key_pairs: dict[str, KeyPair], clock: FakeClock) -> Verifier:
    jwks = {"keys": [pair.public_jwk() for pair in key_pairs.values()]}
    return Verifier(StaticKeys(jwks), POLICY, clock=clock)


def header(key: KeyPair, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"alg": key.alg, "typ": "at+jwt", "kid": key.kid}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def rejects(verifier: Verifier, token: Any, error: type[TokenError]) -> TokenError:
    with pytest.raises(error) as info:
        verifier.verify(token)
    assert type(info.value) is error
    if isinstance(token, str) and len(token) > 20:
        assert token not in str(info.value)
    return info.value


# --- valid tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", keys.ALGORITHMS)
def test_each_algorithm_verifies(verifier: Verifier, key_pairs: dict[str, KeyPair], alg: str) -> None:
    token = keys.sign(claims(), key_pairs[alg], typ="at+jwt")
    assert verifier.verify(token) == claims()


@pytest.mark.parametrize("alg", keys.ALGORITHMS)
async def test_verify_async_with_known_key(
    verifier: Verifier, key_pairs: dict[str, KeyPair], alg: str
) -> None:
    assert (await verifier.verify_async(keys.sign(claims(), key_pairs[alg], typ="at+jwt")))["sub"] == "alice"


@pytest.mark.parametrize("alg", keys.ALGORITHMS)
def test_tokens_signed_by_joserfc_verify(verifier: Verifier, key_pairs: dict[str, KeyPair], alg: str) -> None:
    pair = key_pairs[alg]
    pem = pair.private_pem(None)
    jose_key = JOSE_KEYS[alg].import_key(pem)
    with warnings.catch_warnings():
        # joserfc 1.8 flags "EdDSA" as deprecated by RFC 9864 ("Ed25519"); docs/architecture.md fixes "EdDSA".
        warnings.simplefilter("ignore", SecurityWarning)
        token = jose_jwt.encode(
            {"alg": alg, "typ": "at+jwt", "kid": pair.kid}, claims(), jose_key, algorithms=[alg]
        )
    assert verifier.verify(token) == claims()


def test_audience_list_containing_ours_verifies(verifier: Verifier, es: KeyPair) -> None:
    token = keys.sign(claims(aud=["https://other", AUDIENCE]), es, typ="at+jwt")
    assert verifier.verify(token)["aud"] == ["https://other", AUDIENCE]


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
def test_typ_compares_per_rfc7515(verifier: Verifier, es: KeyPair, typ: str) -> None:
    assert verifier.verify(forge(header(es, typ=typ), claims(), es))["sub"] == "alice"


def test_policy_typ_in_application_form_matches_short_form(es: KeyPair, clock: FakeClock) -> None:
    policy = VerifyPolicy(ISSUER, AUDIENCE, typ="application/session-grant+jwt")
    verifier = Verifier(StaticKeys({"keys": [es.public_jwk()]}), policy, clock=clock)
    assert verifier.verify(keys.sign(claims(), es, typ="session-grant+jwt"))["sub"] == "alice"


def test_nbf_is_optional(verifier: Verifier, es: KeyPair) -> None:
    assert "nbf" not in verifier.verify(keys.sign(claims(nbf=...), es, typ="at+jwt"))


def test_same_header_is_parsed_once_and_still_checked_per_token(verifier: Verifier, es: KeyPair) -> None:
    first = keys.sign(claims(), es, typ="at+jwt")
    verifier.verify(first)
    tampered = first.rsplit(".", 1)[0] + "." + b64(b"\0" * 64)
    rejects(verifier, tampered, BadSignature)
    assert verifier.verify(keys.sign(claims(jti="j-2"), es, typ="at+jwt"))["jti"] == "j-2"


def test_header_cache_stays_bounded(verifier: Verifier, es: KeyPair) -> None:
    for i in range(600):
        rejects(verifier, forge(header(es, kid=f"unknown-{i}"), claims(), es), UnknownKey)
    assert len(verifier._headers) <= 256
    assert verifier.verify(keys.sign(claims(), es, typ="at+jwt"))["sub"] == "alice"


def test_regression_unknown_kid_headers_do_not_evict_known_ones(verifier: Verifier, es: KeyPair) -> None:
    """A storm of tokens with random kids filled the header cache and cleared it again and again, so the valid
    tokens' header was parsed anew every time (bench_jwks_storm: valid-token latency 1.28x in a storm)."""
    valid = keys.sign(claims(), es, typ="at+jwt")
    verifier.verify(valid)
    known = valid.split(".", 1)[0]
    for i in range(600):
        rejects(verifier, forge(header(es, kid=f"unknown-{i}"), claims(), es), UnknownKey)
    assert known in verifier._headers  # the only way to observe it: the cache itself
    assert len(verifier._headers) <= 256


# --- algorithm and key confusion -------------------------------------------------------------------


@pytest.mark.parametrize(
    "alg", ["none", "None", "NONE", "nOnE", "", "HS256", "HS512", "ES384", "PS256", "es256", "Ed25519"]
)
def test_regression_alg_none_and_other_algorithms(verifier: Verifier, es: KeyPair, alg: str) -> None:
    signed = forge(header(es, alg=alg), claims(), es)
    rejects(verifier, signed, UnsupportedAlgorithm)
    unsigned = signed.rsplit(".", 1)[0] + "."
    rejects(verifier, unsigned, UnsupportedAlgorithm)


@pytest.mark.parametrize("alg", keys.ALGORITHMS)
def test_regression_hs256_signed_with_the_public_key(
    verifier: Verifier, key_pairs: dict[str, KeyPair], alg: str
) -> None:
    """CVE-2015-9235 style: an HMAC keyed with the verifier's public key must never verify."""
    pair = key_pairs[alg]
    public = pair.public_key()
    secrets = [
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        json.dumps(pair.public_jwk()).encode(),
    ]
    for secret in secrets:
        signing_input = f"{segment(header(pair, alg='HS256'))}.{segment(claims())}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        rejects(verifier, f"{signing_input}.{b64(mac)}", UnsupportedAlgorithm)


def test_key_of_the_wrong_type(verifier: Verifier, key_pairs: dict[str, KeyPair]) -> None:
    es, rs, ed = key_pairs["ES256"], key_pairs["RS256"], key_pairs["EdDSA"]
    # An ES256 token naming the RSA key's kid, and RS256/EdDSA headers pointing at the EC key.
    rejects(verifier, forge(header(es, kid=rs.kid), claims(), es), UnsupportedAlgorithm)
    rejects(verifier, forge(header(es, alg="RS256"), claims(), es), UnsupportedAlgorithm)
    rejects(verifier, forge(header(ed, kid=es.kid), claims(), ed), UnsupportedAlgorithm)


def test_signature_by_another_key_with_our_kid(verifier: Verifier, es: KeyPair) -> None:
    stranger = keys.generate_key("ES256")
    rejects(verifier, forge(header(es), claims(), stranger), BadSignature)


def test_unknown_kid(verifier: Verifier) -> None:
    stranger = keys.generate_key("ES256")
    rejects(verifier, keys.sign(claims(), stranger, typ="at+jwt"), UnknownKey)


async def test_unknown_kid_async_with_static_keys(verifier: Verifier) -> None:
    with pytest.raises(UnknownKey):
        await verifier.verify_async(keys.sign(claims(), keys.generate_key("EdDSA"), typ="at+jwt"))


# --- header rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["jku", "jwk", "x5u", "x5c", "crit", "b64", "zip"])
def test_forbidden_headers(verifier: Verifier, es: KeyPair, name: str) -> None:
    values: dict[str, Any] = {
        "jku": "https://evil.example/jwks.json",
        "jwk": es.public_jwk(),
        "x5u": "https://evil.example/cert.pem",
        "x5c": ["MIIB"],
        "crit": ["exp"],
        "b64": False,
        "zip": "DEF",
    }
    rejects(verifier, forge({**header(es), name: values[name]}, claims(), es), ForbiddenHeader)


@pytest.mark.parametrize("typ", ["JWT", "session-grant+jwt", "at+jwt ", "application/at+jwt/x", "", 1, None])
def test_wrong_typ(verifier: Verifier, es: KeyPair, typ: Any) -> None:
    rejects(verifier, forge(header(es, typ=typ), claims(), es), WrongTokenType)


def test_missing_typ(verifier: Verifier, es: KeyPair) -> None:
    rejects(verifier, forge(header(es, typ=...), claims(), es), WrongTokenType)


def test_typ_optional_accepts_a_missing_typ_only(
    key_pairs: dict[str, KeyPair], es: KeyPair, clock: FakeClock
) -> None:
    policy = dataclasses.replace(POLICY, typ_optional=True)
    lenient = Verifier(
        StaticKeys({"keys": [p.public_jwk() for p in key_pairs.values()]}), policy, clock=clock
    )
    assert lenient.verify(forge(header(es, typ=...), claims(), es))["sub"] == claims()["sub"]
    for typ in ("JWT", None, ""):
        rejects(lenient, forge(header(es, typ=typ), claims(), es), WrongTokenType)


@pytest.mark.parametrize(
    "bad",
    [
        {"alg": "ES256", "typ": "at+jwt"},  # no kid
        {"typ": "at+jwt", "kid": "k"},  # no alg
        {"alg": ["ES256"], "typ": "at+jwt", "kid": "k"},
        {"alg": "ES256", "typ": "at+jwt", "kid": 7},
        {"alg": "ES256", "typ": "at+jwt", "kid": ""},
        {"alg": "ES256", "typ": "at+jwt", "kid": "k" * 300},
        {"alg": "ES256", "typ": "at+jwt", "kid": "line\nbreak"},
    ],
)
def test_header_members_must_be_well_formed(verifier: Verifier, es: KeyPair, bad: dict[str, Any]) -> None:
    rejects(verifier, forge(bad, claims(), es), MalformedToken)


@pytest.mark.parametrize(
    "raw_header",
    [
        b"not json",
        b"[1,2,3]",
        b'"a string"',
        b"null",
        b'{"alg":"ES256","typ":"at+jwt","kid":"k",}',
        b"\xff\xfe{}",
        '{"alg":"ES256","typ":"at+jwt","kid":"k"}'.encode("utf-16"),
        b'{"alg":"ES256","typ":"at+jwt","kid":"k","n":NaN}',
        b'{"alg":"ES256","typ":"at+jwt","kid":"k","n":' + b"9" * 5000 + b"}",
    ],
)
def test_non_json_headers(verifier: Verifier, es: KeyPair, raw_header: bytes) -> None:
    rejects(verifier, f"{b64(raw_header)}.{segment(claims())}.{b64(b'x' * 64)}", MalformedToken)


def test_regression_duplicate_header_members(verifier: Verifier, es: KeyPair) -> None:
    """Parsers disagree on which duplicate wins ({"alg":"ES256","alg":"none"}): refuse both readings."""
    raw = f'{{"alg":"ES256","typ":"at+jwt","kid":"{es.kid}","alg":"ES256"}}'.encode()
    signing_input = f"{b64(raw)}.{segment(claims())}"
    token = f"{signing_input}.{b64(signature_bytes(es, signing_input.encode()))}"
    rejects(verifier, token, MalformedToken)


@pytest.mark.parametrize("depth", [17, 100, 990, 5000])
def test_deeply_nested_header(verifier: Verifier, es: KeyPair, depth: int) -> None:
    raw = b'{"alg":"ES256","typ":"at+jwt","kid":"k","x":' + b"[" * depth + b"]" * depth + b"}"
    policy = VerifyPolicy(ISSUER, AUDIENCE, max_size=100_000)
    big = Verifier(StaticKeys({"keys": [es.public_jwk()]}), policy)
    rejects(big, f"{b64(raw)}.{segment(claims())}.{b64(b'x' * 64)}", MalformedToken)


def test_moderately_nested_claims_with_brackets_in_strings_pass(verifier: Verifier, es: KeyPair) -> None:
    token = keys.sign(claims(note="[[[[{{{{" * 10, act={"sub": "o", "act": {"sub": "p"}}), es, typ="at+jwt")
    assert verifier.verify(token)["act"]["act"]["sub"] == "p"


def test_deeply_nested_payload(verifier: Verifier, es: KeyPair) -> None:
    nested = '{"a":' * 3000 + "1" + "}" * 3000
    payload = b64(json.dumps(claims())[:-1].encode() + b',"deep":' + nested.encode() + b"}")
    policy = VerifyPolicy(ISSUER, AUDIENCE, max_size=100_000)
    big = Verifier(StaticKeys({"keys": [es.public_jwk()]}), policy, clock=FakeClock(NOW))
    rejects(big, forge(header(es), payload, es), MalformedToken)


# --- shape and size ---------------------------------------------------------------------------------


def test_tampered_payload(verifier: Verifier, es: KeyPair) -> None:
    h, _, s = keys.sign(claims(), es, typ="at+jwt").split(".")
    rejects(verifier, f"{h}.{segment(claims(sub='bob'))}.{s}", BadSignature)


@pytest.mark.parametrize("alg", keys.ALGORITHMS)
def test_tampered_signature(verifier: Verifier, key_pairs: dict[str, KeyPair], alg: str) -> None:
    h, p, s = keys.sign(claims(), key_pairs[alg], typ="at+jwt").split(".")
    flipped = bytearray(base64.urlsafe_b64decode(s + "=="))
    flipped[5] ^= 1
    rejects(verifier, f"{h}.{p}.{b64(bytes(flipped))}", BadSignature)


def test_truncated_tokens(verifier: Verifier, es: KeyPair) -> None:
    token = keys.sign(claims(), es, typ="at+jwt")
    h, p, _ = token.split(".")
    rejects(verifier, f"{h}.{p}", MalformedToken)
    rejects(verifier, h, MalformedToken)
    rejects(verifier, "", MalformedToken)
    rejects(verifier, f"{h}.{p}.", BadSignature)  # empty signature: not 64 bytes
    for cut in (1, 2, 3, 10, 40):
        with pytest.raises((MalformedToken, BadSignature)):
            verifier.verify(token[:-cut])


def test_extra_segments(verifier: Verifier, es: KeyPair) -> None:
    token = keys.sign(claims(), es, typ="at+jwt")
    rejects(verifier, token + ".", MalformedToken)
    rejects(verifier, token + ".e30.e30", MalformedToken)  # looks like a JWE


def test_oversized_token_is_refused_before_decoding(verifier: Verifier, es: KeyPair) -> None:
    rejects(verifier, "!" * (POLICY.max_size + 1), TokenTooLarge)
    big = keys.sign(claims(pad="x" * 9000), es, typ="at+jwt")
    rejects(verifier, big, TokenTooLarge)


def test_token_at_the_size_limit_passes(es: KeyPair, clock: FakeClock) -> None:
    token = keys.sign(claims(), es, typ="at+jwt")
    policy = VerifyPolicy(ISSUER, AUDIENCE, max_size=len(token))
    assert Verifier(StaticKeys({"keys": [es.public_jwk()]}), policy, clock=clock).verify(token)


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.replace(".", "=.", 1),  # padding
        lambda t: t[: t.rindex(".") + 1] + t[t.rindex(".") + 1 :].replace("-", "+").replace("_", "/") + "+",
        lambda t: t + "=",
        lambda t: " " + t,
        lambda t: t.replace(".", "\n.", 1),
        lambda t: t[:-1] + "é",
    ],
)
def test_non_base64url_segments(verifier: Verifier, es: KeyPair, change: Callable[[str], str]) -> None:
    with pytest.raises(MalformedToken):
        verifier.verify(change(keys.sign(claims(), es, typ="at+jwt")))


def test_regression_non_canonical_signature_encoding(verifier: Verifier, es: KeyPair) -> None:
    """The last base64url character carries unused bits: flipping them must not give a second valid token."""
    token = keys.sign(claims(), es, typ="at+jwt")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    twin = token[:-1] + alphabet[last | 1]  # 64 bytes -> 86 chars: the last char has 2 unused bits
    assert twin != token
    rejects(verifier, twin, MalformedToken)


@pytest.mark.parametrize("payload", [b"not json", b"[]", b"null", b'"x"', b"\xff", b'{"a":1}{}'])
def test_payload_must_be_a_json_object(verifier: Verifier, es: KeyPair, payload: bytes) -> None:
    rejects(verifier, forge(header(es), b64(payload), es), MalformedToken)


@pytest.mark.parametrize("token", [None, b"a.b.c", 42, ["a", "b", "c"]])
def test_non_string_tokens(verifier: Verifier, token: Any) -> None:
    rejects(verifier, token, MalformedToken)


# --- claims -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "iss", ["http://127.0.0.1:8000/", "HTTP://127.0.0.1:8000", "https://evil", "", 1, None]
)
def test_wrong_issuer(verifier: Verifier, es: KeyPair, iss: Any) -> None:
    error = WrongIssuer if isinstance(iss, str) else InvalidClaim
    rejects(verifier, keys.sign(claims(iss=iss), es, typ="at+jwt"), error)


@pytest.mark.parametrize(
    "aud", ["http://127.0.0.1:8001", AUDIENCE + "/", [], ["x"], [[AUDIENCE]], {"a": 1}, 5, None]
)
def test_wrong_audience(verifier: Verifier, es: KeyPair, aud: Any) -> None:
    rejects(verifier, keys.sign(claims(aud=aud), es, typ="at+jwt"), WrongAudience)


@pytest.mark.parametrize("name", ["iss", "aud", "exp", "iat", "sub", "jti", "client_id", "scope"])
def test_missing_required_claim(verifier: Verifier, es: KeyPair, name: str) -> None:
    rejects(verifier, keys.sign(claims(**{name: ...}), es, typ="at+jwt"), MissingClaim)


@pytest.mark.parametrize("name", ["sub", "jti", "client_id", "scope", "sid"])
def test_string_claims_must_be_strings(verifier: Verifier, es: KeyPair, name: str) -> None:
    rejects(verifier, keys.sign(claims(**{name: ["alice"]}), es, typ="at+jwt"), InvalidClaim)


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
@pytest.mark.parametrize(
    "value",
    [True, False, "1700000300", None, [NOW], {"t": NOW}, -1, 253402300800, 10**30, 1e308, -1e308],
)
def test_dates_must_be_finite_and_sane(verifier: Verifier, es: KeyPair, name: str, value: Any) -> None:
    rejects(verifier, forge(header(es), claims(**{name: value}), es), InvalidClaim)


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_exp_is_malformed(verifier: Verifier, es: KeyPair, constant: bytes) -> None:
    raw = json.dumps(claims(exp=0)).encode().replace(b'"exp": 0', b'"exp": ' + constant)
    rejects(verifier, forge(header(es), b64(raw), es), MalformedToken)


@pytest.mark.parametrize("literal", [b"1e400", b"-1e400", b"9" * 400])
def test_huge_exp_literal(verifier: Verifier, es: KeyPair, literal: bytes) -> None:
    raw = json.dumps(claims(exp=0)).encode().replace(b'"exp": 0', b'"exp": ' + literal)
    rejects(verifier, forge(header(es), b64(raw), es), InvalidClaim)


@pytest.mark.parametrize("name", ["sub", "jti", "scope"])
def test_regression_null_required_claim(verifier: Verifier, es: KeyPair, name: str) -> None:
    """A required claim present as null passed the presence check before its type was checked."""
    rejects(verifier, keys.sign(claims(**{name: None}), es, typ="at+jwt"), InvalidClaim)


def test_integer_and_float_dates_both_pass(verifier: Verifier, es: KeyPair) -> None:
    token = keys.sign(claims(exp=int(NOW) + 300, iat=NOW - 0.5, nbf=int(NOW)), es, typ="at+jwt")
    assert verifier.verify(token)["exp"] == int(NOW) + 300


def test_expiry_edges_with_leeway(verifier: Verifier, es: KeyPair, clock: FakeClock) -> None:
    token = keys.sign(claims(exp=NOW + 300), es, typ="at+jwt")
    clock.now = NOW + 300 + 59.999
    assert verifier.verify(token)
    clock.now = NOW + 360
    rejects(verifier, token, Expired)
    clock.now = NOW + 10**6
    rejects(verifier, token, Expired)


def test_future_iat_and_nbf_edges(verifier: Verifier, es: KeyPair, clock: FakeClock) -> None:
    clock.now = NOW - 60
    assert verifier.verify(keys.sign(claims(), es, typ="at+jwt"))
    clock.now = NOW - 60.001
    rejects(verifier, keys.sign(claims(), es, typ="at+jwt"), NotYetValid)
    clock.now = NOW
    rejects(verifier, keys.sign(claims(nbf=NOW + 61), es, typ="at+jwt"), NotYetValid)
    rejects(verifier, keys.sign(claims(iat=NOW + 61, exp=NOW + 400), es, typ="at+jwt"), NotYetValid)
    assert verifier.verify(keys.sign(claims(nbf=NOW + 60), es, typ="at+jwt"))


def test_lifetime_cap(verifier: Verifier, es: KeyPair) -> None:
    assert verifier.verify(keys.sign(claims(exp=NOW + 3600), es, typ="at+jwt"))
    rejects(verifier, keys.sign(claims(exp=NOW + 3601), es, typ="at+jwt"), LifetimeTooLong)
    rejects(verifier, keys.sign(claims(exp=NOW + 10**9), es, typ="at+jwt"), LifetimeTooLong)


def test_exp_not_after_iat(verifier: Verifier, es: KeyPair) -> None:
    rejects(verifier, keys.sign(claims(iat=NOW + 30, exp=NOW + 30), es, typ="at+jwt"), InvalidClaim)


@pytest.fixture
def frozen_verifier(es: KeyPair) -> Iterator[tuple[Verifier, Any]]:
    with freeze_time(datetime.fromtimestamp(NOW, UTC)) as frozen:
        yield Verifier(StaticKeys({"keys": [es.public_jwk()]}), POLICY), frozen


def test_expiry_with_freezegun_and_the_default_clock(
    frozen_verifier: tuple[Verifier, Any], es: KeyPair
) -> None:
    verifier, frozen = frozen_verifier
    token = keys.sign(claims(exp=NOW + 300), es, typ="at+jwt")
    assert verifier.verify(token)
    frozen.tick(359)
    assert verifier.verify(token)
    frozen.tick(1)
    rejects(verifier, token, Expired)


def test_signature_is_checked_before_claims(verifier: Verifier, es: KeyPair) -> None:
    """An expired, wrongly addressed token with a bad signature reports the signature, not the claims."""
    h, p, _ = keys.sign(claims(exp=1, iss="x", aud="y"), es, typ="at+jwt").split(".")
    other = keys.sign(claims(), es, typ="at+jwt").split(".")[2]
    rejects(verifier, f"{h}.{p}.{other}", BadSignature)


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        VerifyPolicy("", AUDIENCE)
    with pytest.raises(ValueError, match="leeway"):
        VerifyPolicy(ISSUER, AUDIENCE, leeway=-1)
    assert {"iss", "aud", "exp", "iat", "sub", "jti"} <= VerifyPolicy(ISSUER, AUDIENCE).claims_required
    assert Verifier(StaticKeys({"keys": []}), POLICY).policy is POLICY


def test_error_codes_are_stable() -> None:
    codes = {cls.__name__: cls.code for cls in TokenError.__subclasses__()}
    assert codes["MalformedToken"] == "malformed"
    assert codes["UnsupportedAlgorithm"] == "unsupported_alg"
    assert len(set(codes.values())) == len(codes)
    # An outage is not a rejected token: it has its own code, outside TokenError.
    assert keys.KeysUnavailable.code == "jwks_unavailable"
    assert "KeysUnavailable" not in codes
    assert not issubclass(keys.KeysUnavailable, TokenError)


def test_static_keys(key_pairs: dict[str, KeyPair], clock: FakeClock) -> None:
    verify_keys = [keys.VerifyKey.from_jwk(p.public_jwk()) for p in key_pairs.values()]
    source = StaticKeys.from_keys(verify_keys)
    assert source.kids == {p.kid for p in key_pairs.values()}
    es = key_pairs["ES256"]
    assert Verifier(source, POLICY, clock=clock).verify(keys.sign(claims(), es, typ="at+jwt"))
    with pytest.raises(keys.KeyMaterialError, match="twice"):
        StaticKeys({"keys": [es.public_jwk(), es.public_jwk()]})
    for bad in ({"keys": "x"}, {}, [es.public_jwk()], {"keys": [{**es.public_jwk(), "d": "AAAA"}]}):
        with pytest.raises(keys.KeyMaterialError):
            StaticKeys(bad)  # type: ignore[arg-type]
