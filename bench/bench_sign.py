"""Sign throughput: the issuer's signing path (`keys.sign`) against raw `cryptography` signing, side by side.

Run: .venv/bin/python bench/bench_sign.py [--rounds N] [--seconds S]
The raw baseline signs the same signing input with the private key and nothing else; `keys.sign` also
serializes the claims and header, encodes the segments and, for ES256, converts DER to r||s. A minimal
hand-rolled JWS (that work written inline) and joserfc's jwt.encode are listed for reference. Rounds
interleave the implementations in short slices; the ratio is the median of per-round ratios.
Writes bench/results/sign.json.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwt as jose_jwt

import keys

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _interleave import JOSE_KEYS, access_claims, run_benchmark

TARGETS = {"ES256": 0.85}


def private_op(pair: keys.KeyPair) -> Callable[[bytes], bytes]:
    """The bare private-key operation of the key's algorithm."""
    key = pair.private_key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        ecdsa = ec.ECDSA(hashes.SHA256())
        return lambda data: key.sign(data, ecdsa)
    if isinstance(key, rsa.RSAPrivateKey):
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
        return lambda data: key.sign(data, pkcs1, sha256)
    return key.sign


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def minimal_jws(pair: keys.KeyPair, claims: dict[str, Any]) -> Callable[[], bytes]:
    """The least a correct signer does by hand: serialize, encode, sign, DER to r||s (ES256), encode."""
    header = b64(json.dumps({"alg": pair.alg, "typ": "at+jwt", "kid": pair.kid}).encode())
    sign = private_op(pair)
    is_ec = pair.alg == "ES256"

    def run() -> bytes:
        signing_input = header + b"." + b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = sign(signing_input)
        if is_ec:
            r, s = decode_dss_signature(signature)
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return signing_input + b"." + b64(signature)

    return run


def implementations(alg: keys.Algorithm) -> dict[str, Callable[[], Any]]:
    pair = keys.generate_key(alg)
    claims = access_claims()
    token = keys.sign(claims, pair, typ="at+jwt")
    signing_input = token.rsplit(".", 1)[0].encode()
    jose_key = JOSE_KEYS[alg].import_key(pair.private_pem(None))
    header = {"alg": alg, "typ": "at+jwt", "kid": pair.kid}
    raw = private_op(pair)
    impls: dict[str, Callable[[], Any]] = {
        "raw cryptography": lambda: raw(signing_input),
        "minimal hand-rolled JWS": minimal_jws(pair, claims),
        "keys.sign": lambda: keys.sign(claims, pair, typ="at+jwt"),
        "joserfc jwt.encode": lambda: jose_jwt.encode(header, claims, jose_key, algorithms=[alg]),
    }
    return impls


def main() -> None:
    # 20 rounds: two runs of the whole bench agree within 0.05 on this shared machine (5 did not).
    run_benchmark(
        "sign", __doc__.splitlines()[0], implementations, ours="keys.sign", targets=TARGETS, rounds=20
    )


if __name__ == "__main__":
    main()
