"""One class per algorithm: each signs, verifies and round-trips its JWK; the registry is complete."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, x25519

import keys
from keys import ALGORITHMS, BadSignature, KeyMaterialError, KeyPair, VerifyKey
from keys._algorithms._registry import BY_KTY, BY_NAME, by_name, of_key


def test_the_registry_holds_each_algorithm_once() -> None:
    assert tuple(BY_NAME) == ALGORITHMS
    assert sorted(BY_KTY) == ["EC", "OKP", "RSA"]
    assert {a.name for a in BY_KTY.values()} == set(ALGORITHMS)
    with pytest.raises(KeyMaterialError, match="unsupported algorithm"):
        by_name("HS256")


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_each_algorithm_signs_verifies_and_round_trips_its_jwk(alg: keys.Algorithm) -> None:
    pair = keys.generate_key(alg)
    assert pair.alg == alg
    assert pair.algorithm is by_name(alg)
    assert of_key(pair.private_key) is of_key(pair.public_key()) is by_name(alg)
    jwk = pair.public_jwk()
    assert jwk["kty"] == by_name(alg).kty
    assert keys.thumbprint(jwk) == pair.kid
    verify_key = VerifyKey.from_jwk(jwk)
    assert (verify_key.kid, verify_key.alg) == (pair.kid, alg)
    assert by_name(alg).public_members(verify_key.public_key) == {
        k: v for k, v in jwk.items() if k not in ("kid", "alg", "use")
    }
    signature = pair.sign(b"signing input")
    verify_key.check_signature(b"signing input", signature)
    with pytest.raises(BadSignature):
        verify_key.check_signature(b"signing inpuT", signature)
    assert KeyPair.from_pem(pair.private_pem(b"pass"), b"pass").kid == pair.kid


def test_a_key_pair_or_verify_key_of_the_wrong_algorithm_is_refused() -> None:
    es = keys.generate_key("ES256")
    with pytest.raises(KeyMaterialError, match="not an EdDSA key"):
        KeyPair(es.private_key, "EdDSA", es.kid)
    with pytest.raises(KeyMaterialError, match="not an RS256 key"):
        VerifyKey(es.kid, "RS256", es.public_key())


def test_key_types_we_do_not_sign_with_are_refused() -> None:
    with pytest.raises(KeyMaterialError, match="unsupported key type"):
        of_key(x25519.X25519PrivateKey.generate())
    with pytest.raises(KeyMaterialError, match="P-256"):
        KeyPair.from_private_key(ec.generate_private_key(ec.SECP384R1()))
