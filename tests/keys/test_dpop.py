"""DPoP proofs (RFC 9449): creation, and every refusal rule of §4.3 with its typed error."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
import redis.asyncio as aioredis

import keys
from keys import (
    BadSignature,
    DPoPVerifier,
    Expired,
    ForbiddenHeader,
    InvalidClaim,
    KeyPair,
    MalformedToken,
    MemoryNonces,
    MemoryReplayCache,
    MissingClaim,
    NotYetValid,
    ProofReplayed,
    RedisNonces,
    RedisReplayCache,
    ReplayUnavailable,
    TokenError,
    TokenTooLarge,
    UnsupportedAlgorithm,
    UseDPoPNonce,
    WrongMethod,
    WrongProofKey,
    WrongTokenHash,
    WrongTokenType,
    WrongUri,
    access_token_hash,
    dpop_proof,
)
from keys._algorithms._keypair import public_members
from keys._jose._sign import signature_bytes
from tests.support.clock import FakeClock

NOW = 1_700_000_000.0
HTU = "https://mcp.example/mcp"
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def proof_header(key: KeyPair, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"typ": "dpop+jwt", "alg": key.alg, "jwk": public_members(key.public_key())}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def proof_claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"jti": "proof-1", "htm": "POST", "htu": HTU, "iat": int(NOW)}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def forge(header: dict[str, Any], claims: dict[str, Any], key: KeyPair) -> str:
    """A proof with an arbitrary header and claims, correctly signed by `key`."""
    signing_input = f"{segment(header)}.{segment(claims)}"
    return f"{signing_input}.{b64(signature_bytes(key, signing_input.encode()))}"


@pytest.fixture(scope="module")
def es() -> KeyPair:
    return keys.generate_key("ES256")


@pytest.fixture(scope="module")
def ed() -> KeyPair:
    return keys.generate_key("EdDSA")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def verifier(clock: FakeClock) -> DPoPVerifier:
    return DPoPVerifier(MemoryReplayCache(clock=clock), clock=clock)


async def refuses(verifier: DPoPVerifier, proof: str, error: type[TokenError], **request: Any) -> None:
    target: dict[str, Any] = {"htm": "POST", "htu": HTU, **request}
    with pytest.raises(error) as info:
        await verifier.verify(proof, **target)
    assert type(info.value) is error
    assert proof not in str(info.value)


# --- what a client makes, the verifier accepts -------------------------------------------------


@pytest.mark.parametrize("alg", keys.DPOP_ALGORITHMS)
async def test_proof_verifies_and_names_its_key(verifier: DPoPVerifier, alg: keys.Algorithm) -> None:
    key = keys.generate_key(alg)
    proof = dpop_proof(key, htm="POST", htu=HTU, now=NOW, access_token=TOKEN)
    checked = await verifier.verify(proof, htm="POST", htu=HTU, access_token=TOKEN, jkt=key.kid)
    assert checked.jkt == key.kid == keys.thumbprint(public_members(key.public_key()))
    assert checked.iat == NOW
    assert checked.nonce is None


def test_proof_header_and_claims_follow_rfc9449(es: KeyPair) -> None:
    proof = dpop_proof(es, htm="GET", htu=HTU + "?q=1#frag", now=NOW, access_token=TOKEN, nonce="n-1")
    header_seg, claims_seg, _ = proof.split(".")
    header = json.loads(base64.urlsafe_b64decode(header_seg + "=="))
    claims = json.loads(base64.urlsafe_b64decode(claims_seg + "=="))
    assert header == {"typ": "dpop+jwt", "alg": "ES256", "jwk": public_members(es.public_key())}
    assert "d" not in header["jwk"]
    assert claims["htu"] == HTU  # query and fragment are not part of htu
    assert claims["htm"] == "GET"
    assert claims["iat"] == int(NOW)
    assert claims["nonce"] == "n-1"
    expected_ath = b64(hashlib.sha256(TOKEN.encode()).digest())
    assert claims["ath"] == expected_ath == access_token_hash(TOKEN)
    assert 0 < len(claims["jti"]) <= 64


def test_every_proof_has_its_own_jti(es: KeyPair) -> None:
    proofs = {dpop_proof(es, htm="POST", htu=HTU, now=NOW) for _ in range(50)}
    assert len(proofs) == 50


def test_proofs_are_signed_with_es256_or_eddsa_only() -> None:
    with pytest.raises(keys.KeyMaterialError, match="ES256 or EdDSA"):
        dpop_proof(keys.generate_key("RS256"), htm="POST", htu=HTU, now=NOW)


@pytest.mark.parametrize(
    "claimed",
    [
        "HTTPS://MCP.EXAMPLE/mcp",
        "https://mcp.example:443/mcp",
        "https://mcp.example/./mcp",
        "https://mcp.example/x/../mcp",
        "https://mcp.example/%6Dcp",
    ],
)
async def test_htu_compares_normalised(verifier: DPoPVerifier, es: KeyPair, claimed: str) -> None:
    proof = forge(proof_header(es), proof_claims(htu=claimed), es)
    assert (await verifier.verify(proof, htm="POST", htu=HTU)).jkt == es.kid


async def test_typ_in_application_form_is_accepted(verifier: DPoPVerifier, es: KeyPair) -> None:
    proof = forge(proof_header(es, typ="application/dpop+jwt"), proof_claims(), es)
    assert (await verifier.verify(proof, htm="POST", htu=HTU)).jti == "proof-1"


@pytest.mark.parametrize("skew", [-60, 60])
async def test_iat_within_the_leeway_is_accepted(verifier: DPoPVerifier, es: KeyPair, skew: int) -> None:
    proof = forge(proof_header(es), proof_claims(iat=int(NOW) + skew), es)
    assert (await verifier.verify(proof, htm="POST", htu=HTU)).iat == NOW + skew


# --- RFC 9449 §4.3: each refusal, with its own error -------------------------------------------


async def test_dpop_wrong_key(verifier: DPoPVerifier, es: KeyPair, ed: KeyPair) -> None:
    await refuses(verifier, dpop_proof(es, htm="POST", htu=HTU, now=NOW), WrongProofKey, jkt=ed.kid)


async def test_dpop_replayed_jti(verifier: DPoPVerifier, es: KeyPair) -> None:
    proof = dpop_proof(es, htm="POST", htu=HTU, now=NOW)
    await verifier.verify(proof, htm="POST", htu=HTU)
    await refuses(verifier, proof, ProofReplayed)


async def test_dpop_replayed_jti_is_per_key(verifier: DPoPVerifier, es: KeyPair, ed: KeyPair) -> None:
    # Another key's proof with the same jti is another proof: nobody can burn a jti for someone else.
    await verifier.verify(forge(proof_header(es), proof_claims(), es), htm="POST", htu=HTU)
    await verifier.verify(forge(proof_header(ed), proof_claims(), ed), htm="POST", htu=HTU)


async def test_dpop_wrong_htm(verifier: DPoPVerifier, es: KeyPair) -> None:
    await refuses(verifier, dpop_proof(es, htm="GET", htu=HTU, now=NOW), WrongMethod)


async def test_dpop_htm_is_case_sensitive(verifier: DPoPVerifier, es: KeyPair) -> None:
    await refuses(verifier, forge(proof_header(es), proof_claims(htm="post"), es), WrongMethod)


@pytest.mark.parametrize(
    "claimed",
    [
        "https://mcp.example/mcp/other",
        "https://other.example/mcp",
        "http://mcp.example/mcp",
        "https://mcp.example:8443/mcp",
        "https://user@mcp.example/mcp",
        "mcp.example/mcp",
        "",
    ],
)
async def test_dpop_wrong_htu(verifier: DPoPVerifier, es: KeyPair, claimed: str) -> None:
    error = InvalidClaim if claimed == "" else WrongUri
    await refuses(verifier, forge(proof_header(es), proof_claims(htu=claimed), es), error)


@pytest.mark.parametrize("suffix", ["?a=1", "?", "#frag", "?a=1#frag"])
async def test_dpop_htu_with_query(verifier: DPoPVerifier, es: KeyPair, suffix: str) -> None:
    await refuses(verifier, forge(proof_header(es), proof_claims(htu=HTU + suffix), es), WrongUri)


async def test_dpop_missing_ath(verifier: DPoPVerifier, es: KeyPair) -> None:
    proof = dpop_proof(es, htm="POST", htu=HTU, now=NOW)
    await refuses(verifier, proof, MissingClaim, access_token=TOKEN)


async def test_dpop_wrong_ath(verifier: DPoPVerifier, es: KeyPair) -> None:
    proof = dpop_proof(es, htm="POST", htu=HTU, now=NOW, access_token=TOKEN + "x")
    await refuses(verifier, proof, WrongTokenHash, access_token=TOKEN)


async def test_dpop_stale_iat(verifier: DPoPVerifier, es: KeyPair) -> None:
    await refuses(verifier, dpop_proof(es, htm="POST", htu=HTU, now=NOW - 61), Expired)


async def test_dpop_future_iat_beyond_leeway(verifier: DPoPVerifier, es: KeyPair) -> None:
    await refuses(verifier, dpop_proof(es, htm="POST", htu=HTU, now=NOW + 61), NotYetValid)


@pytest.mark.parametrize("iat", ["1700000000", None, True, 1e300, -1, float("nan")])
async def test_dpop_iat_must_be_a_date(verifier: DPoPVerifier, es: KeyPair, iat: Any) -> None:
    claims = proof_claims(iat=iat)
    error = InvalidClaim
    if iat is not None and isinstance(iat, float) and iat != iat:
        claims["iat"] = 1e400  # json writes inf as Infinity, which the parser refuses
        error = MalformedToken
    await refuses(verifier, forge(proof_header(es), claims, es), error)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
async def test_dpop_alg_none(verifier: DPoPVerifier, es: KeyPair, alg: str) -> None:
    proof = f"{segment(proof_header(es, alg=alg))}.{segment(proof_claims())}."
    await refuses(verifier, proof, UnsupportedAlgorithm)


async def test_dpop_hs256(verifier: DPoPVerifier, es: KeyPair) -> None:
    signing_input = f"{segment(proof_header(es, alg='HS256'))}.{segment(proof_claims())}"
    mac = hmac.new(b"k" * 32, signing_input.encode(), hashlib.sha256).digest()
    await refuses(verifier, f"{signing_input}.{b64(mac)}", UnsupportedAlgorithm)


async def test_dpop_rs256_with_ec_key(verifier: DPoPVerifier, es: KeyPair) -> None:
    rsa = keys.generate_key("RS256")
    # An RS256 signature over a header that carries an EC key: refused before any signature check.
    signing_input = f"{segment(proof_header(es, alg='RS256'))}.{segment(proof_claims())}"
    proof = f"{signing_input}.{b64(signature_bytes(rsa, signing_input.encode()))}"
    await refuses(verifier, proof, UnsupportedAlgorithm)


async def test_dpop_rs256_with_rsa_key(verifier: DPoPVerifier) -> None:
    rsa = keys.generate_key("RS256")
    await refuses(verifier, forge(proof_header(rsa), proof_claims(), rsa), UnsupportedAlgorithm)


async def test_dpop_eddsa_header_with_ec_key(verifier: DPoPVerifier, es: KeyPair, ed: KeyPair) -> None:
    proof = forge(proof_header(es, alg="EdDSA"), proof_claims(), ed)
    await refuses(verifier, proof, UnsupportedAlgorithm)


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "k"])
async def test_dpop_private_d_in_jwk(verifier: DPoPVerifier, es: KeyPair, member: str) -> None:
    jwk = {**public_members(es.public_key()), member: b64(b"\x01" * 32)}
    await refuses(verifier, forge(proof_header(es, jwk=jwk), proof_claims(), es), ForbiddenHeader)


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", "dpop", "dpop+jwt ", ..., 1])
async def test_dpop_wrong_typ(verifier: DPoPVerifier, es: KeyPair, typ: Any) -> None:
    await refuses(verifier, forge(proof_header(es, typ=typ), proof_claims(), es), WrongTokenType)


async def test_dpop_proof_over_the_size_cap(verifier: DPoPVerifier, es: KeyPair) -> None:
    proof = forge(proof_header(es), proof_claims(pad="x" * keys.MAX_PROOF_SIZE), es)
    await refuses(verifier, proof, TokenTooLarge)


@pytest.mark.parametrize("name", ["jku", "x5u", "x5c", "crit", "b64", "zip", "enc"])
async def test_dpop_dangerous_headers(verifier: DPoPVerifier, es: KeyPair, name: str) -> None:
    value: Any = ["exp"] if name == "crit" else "https://attacker.example/x"
    await refuses(verifier, forge(proof_header(es, **{name: value}), proof_claims(), es), ForbiddenHeader)


@pytest.mark.parametrize("jwk", [..., "key", [], {"kty": "EC"}, {"kty": "oct", "k": "AAAA"}])
async def test_dpop_jwk_must_be_a_public_key(verifier: DPoPVerifier, es: KeyPair, jwk: Any) -> None:
    error = ForbiddenHeader if isinstance(jwk, dict) and "k" in jwk else MalformedToken
    await refuses(verifier, forge(proof_header(es, jwk=jwk), proof_claims(), es), error)


async def test_dpop_jwk_in_non_canonical_form(verifier: DPoPVerifier) -> None:
    # A coordinate with a leading zero byte dropped names the same point under another thumbprint.
    while True:
        key = keys.generate_key("ES256")
        members = public_members(key.public_key())
        raw_x = base64.urlsafe_b64decode(members["x"] + "=")
        if raw_x[0] == 0:
            break
    jwk = {**members, "x": b64(raw_x[1:])}
    await refuses(verifier, forge(proof_header(key, jwk=jwk), proof_claims(), key), MalformedToken)


async def test_dpop_bad_signature(verifier: DPoPVerifier, es: KeyPair, ed: KeyPair) -> None:
    # Signed by another key than the one in its header.
    await refuses(verifier, forge(proof_header(es), proof_claims(), keys.generate_key("ES256")), BadSignature)
    proof = dpop_proof(ed, htm="POST", htu=HTU, now=NOW)
    head, claims, sig = proof.split(".")
    await refuses(verifier, f"{head}.{claims}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}", BadSignature)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"jti": ...}, MissingClaim),
        ({"jti": ""}, InvalidClaim),
        ({"jti": 7}, InvalidClaim),
        ({"jti": "j" * 65}, InvalidClaim),
        ({"htm": ...}, MissingClaim),
        ({"htu": ...}, MissingClaim),
        ({"iat": ...}, MissingClaim),
        ({"nonce": 5}, InvalidClaim),
        ({"nonce": "n" * 65}, InvalidClaim),
    ],
)
async def test_dpop_claims_are_required_and_typed(
    verifier: DPoPVerifier, es: KeyPair, changes: dict[str, Any], error: type[TokenError]
) -> None:
    await refuses(verifier, forge(proof_header(es), proof_claims(**changes), es), error)


async def test_dpop_jti_of_64_characters_is_accepted(verifier: DPoPVerifier, es: KeyPair) -> None:
    proof = forge(proof_header(es), proof_claims(jti="j" * 64), es)
    assert (await verifier.verify(proof, htm="POST", htu=HTU)).jti == "j" * 64


@pytest.mark.parametrize(
    "proof",
    ["", "a.b", "a.b.c.d", "é.e.e", "!!!.e30.AA", 42, None],
)
async def test_dpop_malformed(verifier: DPoPVerifier, proof: Any) -> None:
    with pytest.raises(MalformedToken):
        await verifier.verify(proof, htm="POST", htu=HTU)


async def test_dpop_two_proofs_joined_are_malformed(verifier: DPoPVerifier, es: KeyPair) -> None:
    # What a proxy makes of two DPoP header fields: one comma-joined value.
    proof = dpop_proof(es, htm="POST", htu=HTU, now=NOW)
    with pytest.raises(TokenError):
        await verifier.verify(f"{proof}, {proof}", htm="POST", htu=HTU)


async def test_dpop_duplicate_header_member(verifier: DPoPVerifier, es: KeyPair) -> None:
    head = segment(proof_header(es))[:-1]
    raw = json.dumps(proof_header(es), separators=(",", ":"))
    doubled = b64((raw[:-1] + ',"typ":"JWT"}').encode())
    assert doubled != head
    signing_input = f"{doubled}.{segment(proof_claims())}"
    proof = f"{signing_input}.{b64(signature_bytes(es, signing_input.encode()))}"
    await refuses(verifier, proof, MalformedToken)


# --- nonces -----------------------------------------------------------------------------------


@pytest.fixture
def nonces(clock: FakeClock) -> MemoryNonces:
    return MemoryNonces(clock=clock, window=300)


@pytest.fixture
def nonce_verifier(clock: FakeClock, nonces: MemoryNonces) -> DPoPVerifier:
    return DPoPVerifier(MemoryReplayCache(clock=clock), nonces=nonces, clock=clock)


async def test_dpop_nonce_missing_when_required(nonce_verifier: DPoPVerifier, es: KeyPair) -> None:
    assert nonce_verifier.requires_nonce
    await refuses(nonce_verifier, dpop_proof(es, htm="POST", htu=HTU, now=NOW), UseDPoPNonce)


async def test_dpop_nonce_refused_proof_is_not_spent(
    nonce_verifier: DPoPVerifier, nonces: MemoryNonces, es: KeyPair
) -> None:
    # The retry carries a new proof anyway; a proof refused for its nonce must not take room in the cache.
    proof = forge(proof_header(es), proof_claims(nonce="wrong"), es)
    await refuses(nonce_verifier, proof, UseDPoPNonce)
    good = forge(proof_header(es), proof_claims(nonce=await nonces.current()), es)
    assert (await nonce_verifier.verify(good, htm="POST", htu=HTU)).jti == "proof-1"


async def test_dpop_current_and_previous_nonce_accepted(
    nonce_verifier: DPoPVerifier, nonces: MemoryNonces, es: KeyPair, clock: FakeClock
) -> None:
    nonce = await nonces.current()
    proof = dpop_proof(es, htm="POST", htu=HTU, now=clock.now, nonce=nonce)
    assert (await nonce_verifier.verify(proof, htm="POST", htu=HTU)).nonce == nonce
    clock.now += 300  # the next window: a new nonce, the previous one still accepted
    assert await nonces.current() != nonce
    proof = dpop_proof(es, htm="POST", htu=HTU, now=clock.now, nonce=nonce)
    assert (await nonce_verifier.verify(proof, htm="POST", htu=HTU)).nonce == nonce


async def test_dpop_stale_nonce(
    nonce_verifier: DPoPVerifier, nonces: MemoryNonces, es: KeyPair, clock: FakeClock
) -> None:
    nonce = await nonces.current()
    clock.now += 600  # two windows later
    await refuses(
        nonce_verifier, dpop_proof(es, htm="POST", htu=HTU, now=clock.now, nonce=nonce), UseDPoPNonce
    )


async def test_redis_nonces_are_shared_by_replicas(redis_url: str, clock: FakeClock) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        first = RedisNonces(client, prefix="t:nonce", clock=clock)
        second = RedisNonces(client, prefix="t:nonce", clock=clock)
        nonce = await first.current()
        assert await second.current() == nonce
        assert await second.accepts(nonce)
        clock.now += 300
        assert await second.current() != nonce
        assert await first.accepts(nonce)  # the previous window
        clock.now += 300
        assert not await first.accepts(nonce)
        assert not await second.accepts("never-issued")
    finally:
        await client.aclose()


async def test_redis_nonce_store_down_fails_closed(clock: FakeClock) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    try:
        with pytest.raises(ReplayUnavailable):
            await RedisNonces(client, prefix="t:nonce", clock=clock).current()
    finally:
        await client.aclose()


# --- replay across replicas -------------------------------------------------------------------


async def test_dpop_replayed_jti_across_replicas_on_redis(
    redis_url: str, es: KeyPair, clock: FakeClock
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        one = DPoPVerifier(RedisReplayCache(client, prefix="t:replay", clock=clock), clock=clock)
        two = DPoPVerifier(RedisReplayCache(client, prefix="t:replay", clock=clock), clock=clock)
        proof = dpop_proof(es, htm="POST", htu=HTU, now=NOW)
        await one.verify(proof, htm="POST", htu=HTU)
        await refuses(two, proof, ProofReplayed)
        ttl = await client.ttl(next(iter(await client.keys("t:replay:*"))))
        assert 0 < ttl <= 120  # remembered while a replica could still accept it
    finally:
        await client.aclose()


# --- bounds -----------------------------------------------------------------------------------


async def test_header_cache_stays_bounded(verifier: DPoPVerifier) -> None:
    for _ in range(300):
        key = keys.generate_key("EdDSA")
        await verifier.verify(dpop_proof(key, htm="POST", htu=HTU, now=NOW), htm="POST", htu=HTU)
    assert len(verifier._headers) <= 256


def test_verifier_algorithms_are_a_subset_of_es256_and_eddsa(clock: FakeClock) -> None:
    assert DPoPVerifier(MemoryReplayCache(clock=clock)).algorithms == ("ES256", "EdDSA")
    assert DPoPVerifier(MemoryReplayCache(clock=clock), algorithms=["ES256"]).algorithms == ("ES256",)
    with pytest.raises(ValueError, match="subset"):
        DPoPVerifier(MemoryReplayCache(clock=clock), algorithms=["RS256"])
    with pytest.raises(ValueError, match="subset"):
        DPoPVerifier(MemoryReplayCache(clock=clock), algorithms=[])


def test_nonce_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        MemoryNonces(window=0)
