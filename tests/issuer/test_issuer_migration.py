"""The admin side of an algorithm migration: prepare with `rotate {"alg"}`, end with `retire {"alg"}`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from issuer import IssuerSettings, IssuerStartupError
from keys import KeyPair, unverified_header
from tests.support.clock import FakeClock
from tests.support.issuer import Harness, running


async def admin(h: Harness, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {await h.bearer('admin', 'keys:admin')}"}
    return await h.http.post(path, json=body, headers=headers)


def algs_and_states(answer: httpx.Response) -> list[tuple[str, str]]:
    return sorted((k["alg"], k["state"]) for k in answer.json()["keys"])


async def test_rotating_to_an_algorithm_the_ring_lacks_publishes_a_next_key(issuer: Harness) -> None:
    answer = await admin(issuer, "/admin/keys/rotate", {"alg": "RS256"})
    assert answer.status_code == 200
    assert algs_and_states(answer) == [("ES256", "active"), ("ES256", "next"), ("RS256", "next")]
    jwks = (await issuer.http.get("/.well-known/jwks.json")).json()["keys"]
    assert sorted(k["alg"] for k in jwks) == ["ES256", "ES256", "RS256"]
    # Tokens are still ES256: the new key does not sign until the switch.
    token = await issuer.bearer("backend", "sessions:create")
    assert unverified_header(token)["alg"] == "ES256"


async def test_retire_refuses_the_algorithm_this_issuer_signs_with_and_unknown_ones(issuer: Harness) -> None:
    in_use = await admin(issuer, "/admin/keys/retire", {"alg": "ES256"})
    assert (in_use.status_code, in_use.json()["error"]) == (409, "algorithm_in_use")
    not_signing = await admin(issuer, "/admin/keys/retire", {"alg": "EdDSA"})
    assert (not_signing.status_code, not_signing.json()["error"]) == (409, "no_signing_key")
    for body in ({"alg": "HS256"}, {}, {"alg": "RS256", "force": True}):
        bad = await admin(issuer, "/admin/keys/retire", body)
        assert (bad.status_code, bad.json()["error"]) == (400, "invalid_request")


async def test_an_issuer_set_to_a_retired_algorithm_refuses_to_start(
    make_settings: Callable[..., IssuerSettings], clock: FakeClock, client_keys: dict[str, KeyPair]
) -> None:
    async with running(make_settings(), clock, client_keys) as old:
        assert (await admin(old, "/admin/keys/rotate", {"alg": "RS256"})).status_code == 200
    clock.advance(600)
    async with running(make_settings(issuer_signing_alg="RS256"), clock, client_keys) as new:
        retired = await admin(new, "/admin/keys/retire", {"alg": "ES256"})
        assert retired.status_code == 200
        assert ("ES256", "retiring") in algs_and_states(retired)
    with pytest.raises(IssuerStartupError, match="ISSUER_SIGNING_ALG=ES256 was retired"):
        async with running(make_settings(), clock, client_keys):
            pass
