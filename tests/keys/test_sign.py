"""The signer's own refusals."""

from __future__ import annotations

import pytest

from keys import KeyPair, generate_key, sign


@pytest.fixture
def pair() -> KeyPair:
    return generate_key("ES256")


def test_signing_refuses_non_finite_numbers(pair: KeyPair) -> None:
    # orjson would write NaN as null; the signer refuses rather than sign something else than asked.
    for value in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="NaN or infinity"):
            sign({"exp": value}, pair, typ="at+jwt")


def test_es256_raw_signature_matches_the_full_der_decoder() -> None:
    """The signer's byte-slicing DER reader against cryptography's decoder, leading zeros included."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

    from keys._algorithms._es256 import _der_to_raw

    private = ec.generate_private_key(ec.SECP256R1())
    short = 0
    for i in range(3000):  # about 1 in 128 signatures has an r or s of 31 bytes or less
        der = private.sign(f"message {i}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        assert _der_to_raw(der) == r.to_bytes(32, "big") + s.to_bytes(32, "big")
        short += r < 2**248 or s < 2**248
    assert short > 0
    for r, s in ((1, 2), (2**255, 1), (2**256 - 1, 2**247)):  # crafted edge shapes
        assert _der_to_raw(encode_dss_signature(r, s)) == r.to_bytes(32, "big") + s.to_bytes(32, "big")


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_signed_token_is_what_an_independent_reader_reads(alg: str) -> None:
    """Header and payload segments are the unpadded base64url of compact JSON; the signature is the JWS one
    (joserfc verifies ES256 and RS256; EdDSA, which joserfc refuses as deprecated, by cryptography itself)."""
    import base64
    import json

    from cryptography.hazmat.primitives.asymmetric import ed25519
    from joserfc import jws
    from joserfc.jwk import import_key

    def decode(segment: str) -> bytes:
        assert "=" not in segment
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))

    pair = generate_key(alg)  # type: ignore[arg-type]
    claims = {"sub": "alice", "aud": ["a", "b"], "exp": 2_000_000_000, "note": "é\u2028"}
    token = sign(claims, pair, typ="at+jwt")
    header, payload, signature = token.split(".")
    assert json.loads(decode(header)) == {"alg": alg, "typ": "at+jwt", "kid": pair.kid}
    assert json.loads(decode(payload)) == claims
    public = pair.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        public.verify(decode(signature), f"{header}.{payload}".encode())
    else:
        jwk: dict[str, str | list[str]] = dict(pair.public_jwk())
        verified = jws.deserialize_compact(token, import_key(jwk), algorithms=[alg])
        assert json.loads(verified.payload) == claims
