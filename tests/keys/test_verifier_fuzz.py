"""Fuzzing the verifier: whatever arrives, the only exception that escapes is a TokenError."""

from __future__ import annotations

import base64
import contextlib
import json
import random
from typing import Any

import pytest

import keys
from keys import KeyPair, StaticKeys, TokenError, Verifier, VerifyPolicy

ISSUER = "http://127.0.0.1:8000"
AUDIENCE = "http://127.0.0.1:8001/mcp"
NOW = 1_700_000_000.0
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def pairs() -> list[KeyPair]:
    return [keys.generate_key("ES256"), keys.generate_key("EdDSA")]


@pytest.fixture(scope="module")
def verifier(pairs: list[KeyPair]) -> Verifier:
    policy = VerifyPolicy(ISSUER, AUDIENCE, max_size=4096)
    return Verifier(StaticKeys({"keys": [p.public_jwk() for p in pairs]}), policy, clock=lambda: NOW)


def valid_claims() -> dict[str, Any]:
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "a", "jti": "j", "exp": NOW + 60, "iat": NOW}


def random_json(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(9 if depth < 4 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 2**53, 10**20, NOW, 1.5, -0.0, 1e308])
    if choice in (3, 4, 5):
        return rng.choice(
            ["", "ES256", "none", "at+jwt", "JWT", "x" * rng.randrange(300), "\u00e9", "\ud800"]
        )
    if choice == 6:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys_ = ["alg", "typ", "kid", "crit", "jku", "b64", "iss", "aud", "exp", "iat", "nbf", "sub", "x"]
    return {rng.choice(keys_): random_json(rng, depth + 1) for _ in range(rng.randrange(6))}


def mutate(rng: random.Random, token: str) -> str:
    chars = list(token)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(5)
        at = rng.randrange(len(chars)) if chars else 0
        if op == 0 and chars:
            chars[at] = rng.choice(B64 + ".=+/ \n\x00é")
        elif op == 1 and chars:
            del chars[at]
        elif op == 2:
            chars.insert(at, rng.choice(B64 + "."))
        elif op == 3:
            chars = chars[: rng.randrange(len(chars) + 1)]
        else:
            chars.extend(rng.choice(B64) for _ in range(rng.randrange(20)))
    return "".join(chars)


def candidates(rng: random.Random, pairs: list[KeyPair]) -> list[Any]:
    """Random bytes, random strings, random JSON segments, and mutations of valid tokens."""
    out: list[Any] = []
    tokens = [keys.sign(valid_claims(), p, typ="at+jwt") for p in pairs]
    for _ in range(600):
        raw = rng.randbytes(rng.randrange(200))
        out.append(raw.decode("latin-1"))
        out.append(raw)
        out.append(".".join("".join(rng.choice(B64) for _ in range(rng.randrange(90))) for _ in range(3)))
        header = random_json(rng)
        if isinstance(header, dict) and rng.random() < 0.5:
            pair = rng.choice(pairs)
            header.update({"alg": pair.alg, "kid": pair.kid, "typ": "at+jwt"} if rng.random() < 0.5 else {})
        payload = random_json(rng) if rng.random() < 0.5 else {**valid_claims(), "exp": random_json(rng)}
        segs = [json.dumps(header).encode(), json.dumps(payload).encode(), rng.randbytes(64)]
        out.append(".".join(b64(seg) for seg in segs))
        out.append(mutate(rng, rng.choice(tokens)))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_inputs_only_raise_token_errors(verifier: Verifier, pairs: list[KeyPair], seed: int) -> None:
    rng = random.Random(seed)
    outcomes: dict[str, int] = {}
    for candidate in candidates(rng, pairs):
        try:
            verifier.verify(candidate)
        except TokenError as exc:
            outcomes[exc.code] = outcomes.get(exc.code, 0) + 1
        else:
            outcomes["ok"] = outcomes.get("ok", 0) + 1
    # The fuzzer reaches deep into the verifier, not only the first check.
    assert {"malformed", "bad_signature", "unsupported_alg", "unknown_kid"} <= outcomes.keys()


async def test_random_inputs_async(verifier: Verifier, pairs: list[KeyPair]) -> None:
    rng = random.Random(99)
    for candidate in candidates(rng, pairs)[:800]:
        with contextlib.suppress(TokenError):
            await verifier.verify_async(candidate)


def test_valid_tokens_survive_the_fuzz_setup(verifier: Verifier, pairs: list[KeyPair]) -> None:
    for pair in pairs:
        assert verifier.verify(keys.sign(valid_claims(), pair, typ="at+jwt"))["sub"] == "a"
