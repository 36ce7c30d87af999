"""Issuer metrics: latency per endpoint and grant, replay checks, key age and the next rotation."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from issuer import issuer_state
from tests.support.issuer import Harness


def samples(h: Harness) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(issuer_state(h.app).metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(h: Harness, name: str, **labels: str) -> float:
    return samples(h).get((name, tuple(sorted(labels.items()))), 0.0)


async def test_request_latency_is_observed_per_endpoint_grant_and_status(issuer: Harness) -> None:
    first = await issuer.login()
    assert (await issuer.refresh(first["refresh_token"])).status_code == 200
    assert (await issuer.refresh(first["refresh_token"])).status_code == 400  # reuse
    headers = {"Authorization": f"Bearer {await issuer.bearer('admin', 'keys:admin')}"}
    assert (await issuer.http.post("/admin/keys/nope/revoke", headers=headers)).status_code == 404
    assert (await issuer.http.get("/nowhere")).status_code == 404

    count = "voicebank_issuer_request_seconds_count"
    assert value(issuer, count, endpoint="/token", grant="exchange", status="200") == 1
    assert value(issuer, count, endpoint="/token", grant="refresh", status="200") == 1
    assert value(issuer, count, endpoint="/token", grant="refresh", status="400") == 1
    assert value(issuer, count, endpoint="/token", grant="client_credentials", status="200") == 2
    assert value(issuer, count, endpoint="/sessions", grant="", status="201") == 1
    assert value(issuer, count, endpoint="/admin/keys/{kid}/revoke", grant="", status="404") == 1
    assert value(issuer, count, endpoint="other", grant="", status="404") == 1
    issued = "voicebank_issuer_tokens_issued_total"
    assert value(issuer, issued, grant_type="client_credentials") == 2
    assert value(issuer, issued, grant_type="refresh_token") == 1


async def test_replay_checks_are_counted_by_kind_and_outcome(issuer: Harness) -> None:
    grant = (await issuer.session())["session_grant"]
    assert (await issuer.exchange(grant)).status_code == 200
    assert (await issuer.exchange(grant)).status_code == 400  # exchanged once
    form = {"grant_type": "client_credentials", "scope": "sessions:create", **issuer.auth("backend")}
    assert (await issuer.http.post("/token", data=form)).status_code == 200
    assert (await issuer.http.post("/token", data=form)).status_code == 401  # the assertion's jti again

    ops = "voicebank_issuer_replay_operations_total"
    assert value(issuer, ops, kind="grant", outcome="first") == 1
    assert value(issuer, ops, kind="grant", outcome="replayed") == 1
    assert value(issuer, ops, kind="assertion", outcome="replayed") == 1
    assert value(issuer, ops, kind="assertion", outcome="first") == 4


async def test_key_age_and_time_to_the_next_rotation_follow_the_clock_and_the_ring(issuer: Harness) -> None:
    period = issuer_state(issuer.app).settings.keys_rotation_period
    assert value(issuer, "voicebank_issuer_key_age_seconds", alg="ES256") == 0
    assert value(issuer, "voicebank_issuer_next_rotation_seconds", alg="ES256") == period
    issuer.clock.advance(3600)
    assert value(issuer, "voicebank_issuer_key_age_seconds", alg="ES256") == 3600
    assert value(issuer, "voicebank_issuer_next_rotation_seconds", alg="ES256") == period - 3600

    headers = {"Authorization": f"Bearer {await issuer.bearer('admin', 'keys:admin')}"}
    rotated = await issuer.http.post("/admin/keys/rotate", json={}, headers=headers)
    assert rotated.status_code == 200
    # The promoted key signs from now; the fresh next key must wait its period again.
    assert value(issuer, "voicebank_issuer_key_age_seconds", alg="ES256") == 0
    assert value(issuer, "voicebank_issuer_next_rotation_seconds", alg="ES256") == period
    issuer.clock.advance(period + 1)
    assert value(issuer, "voicebank_issuer_next_rotation_seconds", alg="ES256") == 0
    assert await issuer_state(issuer.app).rotation.tick() is not None
    assert value(issuer, "voicebank_issuer_key_age_seconds", alg="ES256") == 0
