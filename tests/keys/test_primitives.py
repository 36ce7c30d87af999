"""JOSE primitives under the verifier: base64url, JSON segments, keys, JWK import, signing; RFC vectors."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jws as jose_jws
from joserfc import jwt as jose_jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

import keys
from keys import BadSignature, KeyMaterialError, KeyPair, MalformedToken, VerifyKey
from keys._jose import _b64, _compact
from keys._jose._sign import signature_bytes

JOSE_KEYS: dict[str, Any] = {"ES256": ECKey, "RS256": RSAKey, "EdDSA": OKPKey}
# RFC 7515 A.3 (ES256), RFC 8037 A.1-A.4 (Ed25519), RFC 7638 §3.1 (thumbprint): published test vectors.
RFC7515_A3_D = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"
RFC7515_A3_INPUT = (
    "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt"
    "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
)
RFC7515_A3_SIG = "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_KID = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
RFC8037_INPUT = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
RFC8037_SIG = "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJE"
    "CPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q"
    "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6"
    "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_KID = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

DECODERS = [_b64.b64url_decode, _compact.b64url_decode]


@pytest.fixture(scope="module")
def pairs() -> dict[str, KeyPair]:
    return {alg: keys.generate_key(alg) for alg in keys.ALGORITHMS}


def jose_key(pair: KeyPair) -> Any:
    return JOSE_KEYS[pair.alg].import_key(pair.private_pem(None))


# --- base64url --------------------------------------------------------------------------------------

RFC4648 = [
    (b"", ""),
    (b"f", "Zg"),
    (b"fo", "Zm8"),
    (b"foo", "Zm9v"),
    (b"foob", "Zm9vYg"),
    (b"fooba", "Zm9vYmE"),
]


@pytest.mark.parametrize(("raw", "encoded"), [*RFC4648, (b"\xfb\xff\xbf", "-_-_"), (b"\xff\xfe", "__4")])
@pytest.mark.parametrize("decode", DECODERS)
def test_base64url_vectors(raw: bytes, encoded: str, decode: Any) -> None:
    assert _b64.b64url_encode(raw) == encoded
    assert decode(encoded) == raw


@pytest.mark.parametrize(
    "bad", ["Zg==", "Zm8=", "Z", "Zm9vY", "+/+/", "Zm 9v", "Zm9v\n", "Zg.", "é", "Zm9v=", "\x00"]
)
@pytest.mark.parametrize("decode", DECODERS)
def test_base64url_refuses_non_strict_input(bad: str, decode: Any) -> None:
    with pytest.raises(MalformedToken):
        decode(bad)


@pytest.mark.parametrize("non_canonical", ["Zh", "Zm9", "Zm9vYh", "QR", "QUJ"])
def test_fast_decoder_refuses_non_canonical_trailing_bits(non_canonical: str) -> None:
    with pytest.raises(MalformedToken):
        _compact.b64url_decode(non_canonical)


def test_fast_decoder_agrees_with_the_reference_on_random_bytes() -> None:
    for size in range(0, 200):
        raw = bytes((i * 37 + size) % 256 for i in range(size))
        encoded = _b64.b64url_encode(raw)
        assert _compact.b64url_decode(encoded) == _b64.b64url_decode(encoded) == raw


# --- JSON segments ----------------------------------------------------------------------------------


def test_json_object_accepts_objects_and_counts_depth_exactly() -> None:
    assert _compact.json_object(b'{"a": {"b": [1, 2]}}', strict=True) == {"a": {"b": [1, 2]}}
    ok = '{"a":' * 15 + "[]" + "}" * 15  # 16 levels
    assert _compact.json_object(ok.encode(), strict=False)
    with pytest.raises(MalformedToken, match="deep"):
        _compact.json_object(('{"a":' * 16 + "[]" + "}" * 16).encode(), strict=False)
    wide = {"k": [[[1]] for _ in range(50)], "s": "[{" * 40}
    assert _compact.json_object(json.dumps(wide).encode(), strict=True) == wide


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize(
    "raw", [b"", b"[]", b"1", b"{", b'{"a":NaN}', b'{"a":-Infinity}', b"\xc3(", b"[" * 5000]
)
def test_json_object_refusals(raw: bytes, strict: bool) -> None:
    with pytest.raises(MalformedToken):
        _compact.json_object(raw, strict=strict)


def test_duplicates_refused_only_when_strict() -> None:
    with pytest.raises(MalformedToken, match="duplicate"):
        _compact.json_object(b'{"a":{"b":1,"b":2}}', strict=True)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"iss": "https://i.test", "exp": 1800000300, "iat": 1.5, "aud": ["a"], "act": {"sub": "x"}}',
        b' \n{"a": "caf\\u00e9 \\ud83c\\udfe0 \xc3\xa9", "b": [true, false, null, -0, 0.1, 1e308]}\t',
        b'{"lone": "\\ud800", "n": 18446744073709551615, "m": -9223372036854775808}',
        b'{"huge": 1e400, "tiny": -1e400, "digits": ' + b"9" * 400 + b"}",  # orjson refuses: json reads
        b'{"a": 1, "a": 2}',  # a duplicate in a verified payload: the last one, as json reads it
    ],
)
def test_payload_reading_agrees_with_json(raw: bytes) -> None:
    """The verified payload's fast reader (orjson, with json for what it refuses) reads what json reads."""
    assert _compact.json_object(raw, strict=False) == json.loads(raw)


# --- keys and thumbprints ---------------------------------------------------------------------------


def test_rfc7638_thumbprint_vector() -> None:
    assert (
        keys.thumbprint({"kty": "RSA", "e": "AQAB", "n": RFC7638_N, "alg": "RS256", "kid": "x"})
        == RFC7638_KID
    )


@pytest.mark.parametrize("jwk", [{"kty": "EC", "crv": "P-256", "x": "a"}, {"kty": "oct", "k": "a"}, {}])
def test_thumbprint_refuses_incomplete_jwks(jwk: dict[str, str]) -> None:
    with pytest.raises(KeyMaterialError):
        keys.thumbprint(jwk)


@pytest.mark.parametrize("alg", keys.ALGORITHMS)
def test_generated_keys_have_joserfc_thumbprints(pairs: dict[str, KeyPair], alg: str) -> None:
    pair = pairs[alg]
    jwk = pair.public_jwk()
    assert pair.alg == alg == jwk["alg"]
    assert jwk["use"] == "sig"
    assert pair.kid == jwk["kid"] == jose_key(pair).thumbprint()
    assert not {"d", "p", "q", "dp", "dq", "qi"} & jwk.keys()
    assert repr(pair).count("private_key") == 0


def test_key_sizes(pairs: dict[str, KeyPair]) -> None:
    rsa_key = pairs["RS256"].private_key
    assert isinstance(rsa_key, rsa.RSAPrivateKey)
    assert rsa_key.key_size == 3072
    ec_key = pairs["ES256"].private_key
    assert isinstance(ec_key, ec.EllipticCurvePrivateKey)
    assert isinstance(ec_key.curve, ec.SECP256R1)
    assert isinstance(pairs["EdDSA"].private_key, ed25519.Ed25519PrivateKey)


@pytest.mark.parametrize("alg", keys.ALGORITHMS)
@pytest.mark.parametrize("passphrase", [None, b"correct horse"])
def test_pem_round_trip(pairs: dict[str, KeyPair], alg: str, passphrase: bytes | None) -> None:
    pem = pairs[alg].private_pem(passphrase)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY" if passphrase else b"-----BEGIN PRIVATE KEY")
    assert KeyPair.from_pem(pem, passphrase).kid == pairs[alg].kid


def test_pem_errors_carry_no_key_material(pairs: dict[str, KeyPair]) -> None:
    pem = pairs["ES256"].private_pem(b"right")
    with pytest.raises(KeyMaterialError) as info:
        KeyPair.from_pem(pem, b"wrong")
    assert pem.decode().splitlines()[1] not in str(info.value)
    with pytest.raises(KeyMaterialError):
        KeyPair.from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", None)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the point of the test
    with pytest.raises(KeyMaterialError, match="2048"):
        KeyPair.from_private_key(small)
    with pytest.raises(KeyMaterialError, match="P-256"):
        KeyPair.from_private_key(ec.generate_private_key(ec.SECP384R1()))


# --- JWK import -------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", keys.ALGORITHMS)
def test_verify_key_from_jwk(pairs: dict[str, KeyPair], alg: str) -> None:
    jwk = pairs[alg].public_jwk()
    key = VerifyKey.from_jwk(jwk)
    assert (key.kid, key.alg) == (pairs[alg].kid, alg)
    bare = {k: v for k, v in jwk.items() if k not in ("kid", "alg", "use")}
    assert VerifyKey.from_jwk(bare).kid == pairs[alg].kid  # kid and alg inferred from the key


def test_rfc8037_public_key_and_thumbprint() -> None:
    key = VerifyKey.from_jwk({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X})
    assert (key.kid, key.alg) == (RFC8037_KID, "EdDSA")


def bad_jwks(pairs: dict[str, KeyPair]) -> list[Any]:
    ec_jwk, rsa_jwk, ed_jwk = (pairs[a].public_jwk() for a in keys.ALGORITHMS)
    small_n = _b64.b64url_encode((2**1023 + 1).to_bytes(128, "big"))
    return [
        {**ec_jwk, "d": "AAAA"},
        {**rsa_jwk, "p": "AAAA"},
        {**ec_jwk, "use": "enc"},
        {**ec_jwk, "alg": "RS256"},
        {**ec_jwk, "alg": "none"},
        {**rsa_jwk, "alg": "HS256"},
        {**ed_jwk, "alg": "Ed25519"},
        {**ec_jwk, "crv": "P-384"},
        {**ec_jwk, "y": ec_jwk["x"]},  # not on the curve
        {**ec_jwk, "x": "not base64!"},
        {**ec_jwk, "x": 5},
        {**rsa_jwk, "n": small_n},
        {**ed_jwk, "crv": "X25519"},
        {**ed_jwk, "x": "AAAA"},
        {**ed_jwk, "x": None},
        {**ec_jwk, "kid": 7},
        {"kty": "oct", "k": "c2VjcmV0"},
        {"kty": "RSA"},
        "not a mapping",
    ]


def test_verify_key_refuses_bad_jwks(pairs: dict[str, KeyPair]) -> None:
    for jwk in bad_jwks(pairs):
        with pytest.raises(KeyMaterialError):
            VerifyKey.from_jwk(jwk)


# --- signatures -------------------------------------------------------------------------------------


def test_rfc7515_a3_es256_vector() -> None:
    d = int.from_bytes(_b64.b64url_decode(RFC7515_A3_D), "big")
    key = VerifyKey.from_public_key(ec.derive_private_key(d, ec.SECP256R1()).public_key(), "ES256")
    key.check_signature(RFC7515_A3_INPUT.encode(), _b64.b64url_decode(RFC7515_A3_SIG))
    with pytest.raises(BadSignature):
        key.check_signature(RFC7515_A3_INPUT.encode() + b"x", _b64.b64url_decode(RFC7515_A3_SIG))
    with pytest.raises(BadSignature, match="64 bytes"):
        key.check_signature(RFC7515_A3_INPUT.encode(), _b64.b64url_decode(RFC7515_A3_SIG)[:63])


def test_rfc8037_a4_ed25519_vector() -> None:
    private = ed25519.Ed25519PrivateKey.from_private_bytes(_b64.b64url_decode(RFC8037_D))
    pair = KeyPair.from_private_key(private)
    assert pair.kid == RFC8037_KID
    signature = signature_bytes(pair, RFC8037_INPUT.encode())
    assert _b64.b64url_encode(signature) == RFC8037_SIG  # Ed25519 is deterministic
    VerifyKey.from_jwk(pair.public_jwk()).check_signature(RFC8037_INPUT.encode(), signature)


@pytest.mark.parametrize("alg", keys.ALGORITHMS)
def test_sign_header_and_joserfc_verifies(pairs: dict[str, KeyPair], alg: str) -> None:
    pair = pairs[alg]
    claims = {"iss": "i", "sub": "s", "n": 1, "u": "é"}
    token = keys.sign(claims, pair, typ="at+jwt")
    header = json.loads(_b64.b64url_decode(token.split(".")[0]))
    assert header == {"alg": alg, "typ": "at+jwt", "kid": pair.kid}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc 1.8: "EdDSA" deprecated by RFC 9864
        decoded = jose_jwt.decode(token, jose_key(pair), algorithms=[alg])
        assert decoded.claims == claims
        with pytest.raises(Exception, match="signature"):
            jose_jws.deserialize_compact(token[:-4] + "AAAA", jose_key(pair), algorithms=[alg])


@pytest.mark.parametrize("alg", keys.ALGORITHMS)
def test_joserfc_signature_checks_with_verify_key(pairs: dict[str, KeyPair], alg: str) -> None:
    pair = pairs[alg]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        token = jose_jws.serialize_compact({"alg": alg}, b"payload", jose_key(pair), algorithms=[alg])
    signing_input, _, signature = token.rpartition(".")
    key = VerifyKey.from_jwk(pair.public_jwk())
    key.check_signature(signing_input.encode(), _b64.b64url_decode(signature))
    with pytest.raises(BadSignature):
        key.check_signature(signing_input.encode() + b"!", _b64.b64url_decode(signature))


def test_json_whitespace_allowed_trailing_data_refused() -> None:
    assert _compact.json_object(b' \r\n{"a": 1}\t ', strict=True) == {"a": 1}
    for raw in (b'{"a":1} x', b'{"a":1}{"b":2}', b"   ", b'{"a":1}\x00'):
        with pytest.raises(MalformedToken):
            _compact.json_object(raw, strict=True)
