"""Sign throughput: the issuer's signing path (`keys.sign`) against raw `cryptography` signing, side by side.

Run: .venv/bin/python bench/bench_sign.py [--rounds N] [--seconds S]
The raw baseline signs the same signing input with the private key and nothing else; `keys.sign` also
serializes the claims and header, encodes the segments and, for ES256, converts DER to r||s. A minimal
hand-rolled JWS (that work written inline) and joserfc's jwt.encode are listed for reference. Rounds
interleave the implementations in short slices; the ratio is the median of per-round ratios.
Writes bench/results/sign.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwt as jose_jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

import keys

JOSE_KEYS: dict[str, Any] = {"ES256": ECKey, "RS256": RSAKey, "EdDSA": OKPKey}
ISSUER = "http://127.0.0.1:8000"
AUDIENCE = "http://127.0.0.1:8001/mcp"
NOW = 1_700_000_000
TARGETS = {"ES256": 0.8}
RESULTS = Path(__file__).resolve().parent / "results"


def access_claims() -> dict[str, Any]:
    """A realistic RFC 9068 access token of DESIGN.md."""
    return {
        "iss": ISSUER,
        "sub": "alice",
        "aud": AUDIENCE,
        "exp": NOW + 300,
        "iat": NOW,
        "nbf": NOW,
        "jti": "Jx3k9Q2mZt7Lw4RfB8vN1A",
        "client_id": "orchestrator",
        "scope": "read",
        "sid": "room-7f3a9c",
        "act": {"sub": "orchestrator"},
    }


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


def calibrate(run: Callable[[], Any], seconds: float) -> int:
    """How many calls take about `seconds`."""
    start = time.perf_counter()
    for _ in range(20):
        run()
    return max(5, int(seconds / ((time.perf_counter() - start) / 20)))


def measure(impls: dict[str, Callable[[], Any]], rounds: int, seconds: float) -> dict[str, list[float]]:
    """Ops/s per round for each implementation, interleaved in slices of a few milliseconds.

    Each round runs every implementation in many short alternating slices (rotating the order), so load from
    other processes lands on all of them alike and the per-round ratios stay meaningful on a busy machine.
    """
    slice_seconds = 0.004
    counts = {name: calibrate(run, slice_seconds) for name, run in impls.items()}
    slices = max(1, int(seconds / slice_seconds))
    names = list(impls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        elapsed = dict.fromkeys(names, 0.0)
        for index in range(slices):
            for name in names[index % len(names) :] + names[: index % len(names)]:
                run, count = impls[name], counts[name]
                start = time.perf_counter()
                for _ in range(count):
                    run()
                elapsed[name] += time.perf_counter() - start
        for name in names:
            samples[name].append(counts[name] * slices / elapsed[name])
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.3, help="time per implementation per round")
    args = parser.parse_args()
    warnings.simplefilter("ignore", SecurityWarning)  # joserfc 1.8 marks "EdDSA" deprecated (RFC 9864)

    algs: tuple[keys.Algorithm, ...] = keys.ALGORITHMS
    impls = {alg: implementations(alg) for alg in algs}
    samples = {alg: measure(impls[alg], args.rounds, args.seconds) for alg in algs}

    report: dict[str, Any] = {"benchmark": "sign", "rounds": args.rounds, "results": {}}
    print(f"{'alg':6} {'implementation':24} {'ops/s':>10} {'ratio':>7} {'target':>7}")
    for alg in algs:
        raw = samples[alg]["raw cryptography"]
        rows = {}
        for name, values in samples[alg].items():
            ratio = statistics.median(v / r for v, r in zip(values, raw, strict=True))
            rows[name] = {"ops_per_s": round(statistics.median(values)), "ratio_to_raw": round(ratio, 3)}
            target = f"{TARGETS[alg]:.2f}" if name == "keys.sign" and alg in TARGETS else ""
            print(f"{alg:6} {name:24} {statistics.median(values):10.0f} {ratio:7.3f} {target:>7}")
        entry: dict[str, Any] = {"implementations": rows}
        if alg in TARGETS:
            entry |= {
                "target": TARGETS[alg],
                "meets_target": rows["keys.sign"]["ratio_to_raw"] >= TARGETS[alg],
            }
        report["results"][alg] = entry
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sign.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS / 'sign.json'}")


if __name__ == "__main__":
    main()
