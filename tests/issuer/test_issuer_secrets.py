"""No private key material, passphrase or issued token ever appears in logs or responses."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from issuer import IssuerSettings, issuer_state
from keys import KeyPair
from tests.support.clock import FakeClock
from tests.support.issuer import running

PASSPHRASE = "correct horse battery staple 42"


def private_scalars(key: KeyPair) -> list[str]:
    """The private scalar of an EC key as base64url (the JWK `d` member) and as decimal."""
    assert isinstance(key.private_key, ec.EllipticCurvePrivateKey)
    d = key.private_key.private_numbers().private_value
    raw = base64.urlsafe_b64encode(d.to_bytes(32, "big")).rstrip(b"=").decode()
    return [raw, str(d)]


async def test_no_secrets_in_logs_or_responses(
    make_settings: Callable[..., IssuerSettings],
    clock: FakeClock,
    client_keys: dict[str, KeyPair],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(keys_passphrase=SecretStr(PASSPHRASE), voicebank_mode="prod")
    assert PASSPHRASE not in repr(settings)
    bodies: list[str] = []
    async with running(settings, clock, client_keys) as h:
        state = issuer_state(h.app)
        ring = await state.store.current()
        headers = {"Authorization": f"Bearer {await h.bearer('admin', 'keys:admin')}"}
        bodies.append((await h.http.get("/admin/keys", headers=headers)).text)
        bodies.append((await h.http.get("/.well-known/jwks.json")).text)
        bodies.append(await h.metrics())
        bodies.append((await h.http.post("/admin/keys/rotate", headers=headers, json={"force": True})).text)
        bodies.append((await h.http.post("/admin/keys/rotate", headers=headers)).text)  # 409
        kid = ring.signing_key().kid
        bodies.append((await h.http.post(f"/admin/keys/{kid}/revoke", headers=headers)).text)
        first = await h.login()
        second = (await h.refresh(first["refresh_token"])).json()
        bodies.append((await h.refresh(first["refresh_token"])).text)  # reuse: refused
        bodies.append((await h.http.get("/admin/keys", headers=headers)).text)
        for response_body in (first, second):
            bodies.append(str({k: v for k, v in response_body.items() if k != "refresh_token"}))
        ring = await state.store.current()
        issuer_keys = [ring.pairs[r.kid] for r in ring.records if r.kid in ring.pairs]
    pems = [key.private_pem(None).decode() for key in issuer_keys]
    forbidden = [PASSPHRASE, "PRIVATE KEY", '"d":', *[s for k in issuer_keys for s in private_scalars(k)]]
    forbidden += [line for pem in pems for line in pem.splitlines()[1:-1]]
    logs = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records  # the run did log (refusals, rotations)
    for needle in forbidden:
        assert needle not in logs
        for body in bodies:
            assert needle not in body
    for token in h.issued:
        if token:
            assert token not in logs
