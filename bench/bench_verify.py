"""Verify throughput: our Verifier (cached keys) against raw `cryptography` on the same tokens, side by side.

Run: .venv/bin/python bench/bench_verify.py [--rounds N] [--seconds S]
Rounds interleave every implementation, so a noisy machine slows them all alike; the ratio reported is the
median of per-round ratios. Writes bench/results/verify.json. Then the same for DPoP proofs (RFC 9449):
keys.DPoPVerifier on the proofs a call sends with an access token, against the raw signature check of those
proofs; writes bench/results/verify_dpop.json.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jwt as jose_jwt

import keys

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _interleave import AUDIENCE, ISSUER, JOSE_KEYS, NOW, access_claims, run_benchmark

TARGETS = {"ES256": 0.85, "RS256": 0.6, "EdDSA": 0.85}


def raw_verifier(next_token: Callable[[], str], public_key: Any, alg: str) -> Callable[[], None]:
    """Only what any verifier must do: split, decode the signature, DER-encode (ES256), verify."""
    ecdsa = ec.ECDSA(hashes.SHA256())
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()

    def run() -> None:
        header, payload, signature = next_token().split(".")
        sig = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        signing_input = f"{header}.{payload}".encode()
        if alg == "ES256":
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            public_key.verify(der, signing_input, ecdsa)
        elif alg == "RS256":
            public_key.verify(sig, signing_input, pkcs1, sha256)
        else:
            public_key.verify(sig, signing_input)

    return run


def jwks_cache_source(jwks: dict[str, Any]) -> keys.JWKSCache:
    """A JWKSCache loaded once over HTTP (an in-process transport): the MCP server's real key source."""
    body = json.dumps(jwks).encode()
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, content=body, headers={"cache-control": "max-age=3600"})
    )

    async def load() -> keys.JWKSCache:
        async with httpx.AsyncClient(transport=transport) as client:
            cache = keys.JWKSCache("http://issuer/.well-known/jwks.json", client, clock=lambda: NOW)
            await cache.refresh()
            return cache

    return asyncio.run(load())


# More distinct tokens than the verifier's verified-token cache holds (4096), so that every timed call of
# every implementation checks a signature: the cache would otherwise make the comparison meaningless.
DISTINCT_TOKENS = 4500


def implementations(alg: keys.Algorithm) -> dict[str, Callable[[], Any]]:
    pair = keys.generate_key(alg)
    tokens = [
        keys.sign({**access_claims(), "jti": f"jti-{n}"}, pair, typ="at+jwt") for n in range(DISTINCT_TOKENS)
    ]
    token = tokens[0]
    jwks = {"keys": [pair.public_jwk()]}
    policy = keys.VerifyPolicy(ISSUER, AUDIENCE)
    static = keys.Verifier(keys.StaticKeys(jwks), policy, clock=lambda: NOW)
    cached = keys.Verifier(jwks_cache_source(jwks), policy, clock=lambda: NOW)
    repeat = keys.Verifier(keys.StaticKeys(jwks), policy, clock=lambda: NOW)
    jose_key = JOSE_KEYS[alg].import_key(pair.private_pem(None))
    registry = jose_jwt.JWTClaimsRegistry(
        now=int(NOW), leeway=60, iss={"essential": True, "value": ISSUER}, aud={"value": AUDIENCE}
    )

    def cycling() -> Callable[[], str]:
        return itertools.cycle(tokens).__next__

    def joserfc_verify(next_token: Callable[[], str]) -> Callable[[], None]:
        return lambda: registry.validate(jose_jwt.decode(next_token(), jose_key, algorithms=[alg]).claims)

    public_key = pair.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey)
    static_next, cached_next = cycling(), cycling()
    impls: dict[str, Callable[[], Any]] = {
        "raw cryptography": raw_verifier(cycling(), public_key, alg),
        "keys.Verifier (StaticKeys)": lambda: static.verify(static_next()),
        "keys.Verifier (JWKSCache)": lambda: cached.verify(cached_next()),
        "joserfc jwt.decode+validate": joserfc_verify(cycling()),
        # For reference: the same token again, as a client reuses its access token (signature cached).
        "keys.Verifier (same token again)": lambda: repeat.verify(token),
    }
    for run in impls.values():
        run()  # every implementation accepts the token before it is timed
    return impls


RESOURCE = AUDIENCE
# A call's proofs share one key; more distinct proofs than laps would let nothing repeat within a lap.
DISTINCT_PROOFS = 2000
DPOP_TARGETS = {"ES256": 0.85, "EdDSA": 0.85}
DPOP_OURS = "keys.DPoPVerifier.check"


def _finished(coroutine: Any) -> Any:
    """The result of a coroutine that never suspends (the memory replay cache never does)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine suspended")


def dpop_implementations(alg: keys.Algorithm) -> dict[str, Callable[[], Any]]:
    """A resource server's proof check: every rule, with `ath` of the token and the token's `cnf.jkt`."""
    pair = keys.generate_key(alg)
    token = keys.sign({**access_claims(), "cnf": {"jkt": pair.kid}}, pair, typ="at+jwt")
    proofs = [
        keys.dpop_proof(pair, htm="POST", htu=RESOURCE, now=NOW, access_token=token)
        for _ in range(DISTINCT_PROOFS)
    ]
    public_key = pair.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)

    def fresh_verifier() -> keys.DPoPVerifier:
        return keys.DPoPVerifier(keys.MemoryReplayCache(clock=lambda: NOW), clock=lambda: NOW)

    checker = fresh_verifier()
    next_check = itertools.cycle(proofs).__next__
    spending = [fresh_verifier(), 0]  # the verifier of this lap over the proofs, and the next proof's index

    def verify() -> None:
        # The full check with the jti spent in a memory replay cache; each lap over the proofs starts with a
        # new cache (a new verifier), as a lap would otherwise replay every proof.
        verifier, index = spending
        assert isinstance(verifier, keys.DPoPVerifier)
        assert isinstance(index, int)
        spending[1] = (index + 1) % DISTINCT_PROOFS
        if spending[1] == 0:
            spending[0] = fresh_verifier()
        _finished(verifier.verify(proofs[index], htm="POST", htu=RESOURCE, access_token=token, jkt=pair.kid))

    impls: dict[str, Callable[[], Any]] = {
        "raw cryptography": raw_verifier(itertools.cycle(proofs).__next__, public_key, alg),
        DPOP_OURS: lambda: checker.check(
            next_check(), htm="POST", htu=RESOURCE, access_token=token, jkt=pair.kid
        ),
        "keys.DPoPVerifier.verify (memory replay)": verify,
    }
    for run in impls.values():
        run()  # every implementation accepts the proof before it is timed
    return impls


def main() -> None:
    ours = "keys.Verifier (StaticKeys)"
    run_benchmark("verify", __doc__.splitlines()[0], implementations, ours=ours, targets=TARGETS)
    run_benchmark(
        "verify_dpop",
        "DPoP proof check",
        dpop_implementations,
        ours=DPOP_OURS,
        targets=DPOP_TARGETS,
        algorithms=keys.DPOP_ALGORITHMS,
    )


if __name__ == "__main__":
    main()
