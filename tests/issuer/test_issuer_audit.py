"""The issuer's audit log: one JSON line per decision with the fields docs/architecture.md lists, never a
token or a key."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from issuer._audit import encode_line
from keys import KeyPair
from tests.support.issuer import Harness, payment

FIELDS = [
    "time", "service", "event", "client_id", "sub", "sid", "scope", "jti",
    "kid", "exp", "family", "outcome", "reason", "trace_id",
]  # fmt: skip


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, dict[str, Any]]]:
    return [(r.levelno, json.loads(r.getMessage())) for r in caplog.records if r.name == "voicebank.audit"]


def secrets_of(h: Harness, client_keys: dict[str, KeyPair], jwks: list[dict[str, str]]) -> list[str]:
    """Every token and key value the flow handled, as it could appear in a log."""
    found = [value for value in h.issued if value]
    for pair in client_keys.values():
        found += [v for k, v in pair.public_jwk().items() if k in ("x", "y", "n")]
        found.append(pair.private_pem(None).decode().splitlines()[1])
    found += [value for jwk in jwks for k, value in jwk.items() if k in ("x", "y", "n")]
    return found


async def published(h: Harness) -> list[dict[str, str]]:
    keys: list[dict[str, str]] = (await h.http.get("/.well-known/jwks.json")).json()["keys"]
    return keys


async def bearer_post(h: Harness, path: str, client: str, scope: str, body: dict[str, Any]) -> Any:
    token = await h.bearer(client, scope)
    return await h.http.post(path, json=body, headers={"Authorization": f"Bearer {token}"})


async def test_a_whole_flow_writes_one_line_per_decision_and_no_secret(
    h: Harness, client_keys: dict[str, KeyPair], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voicebank.audit")
    jwks = await published(h)
    session = await h.session()
    exchanged = await h.exchange(session["session_grant"], scope="read")
    refreshed = await h.refresh(exchanged.json()["refresh_token"], scope="configure")
    assert refreshed.status_code == 200
    paid = await h.transact(refreshed.json()["refresh_token"], payment())
    assert paid.status_code == 200
    admin = {"Authorization": f"Bearer {await h.bearer('admin', 'keys:admin')}"}
    assert (await h.http.get("/admin/keys", headers=admin)).status_code == 200
    rotated = await h.http.post("/admin/keys/rotate", json={"force": True}, headers=admin)
    assert rotated.status_code == 200
    retiring = next(k["kid"] for k in rotated.json()["keys"] if k["state"] == "retiring")
    assert (await h.http.post(f"/admin/keys/{retiring}/revoke", headers=admin)).status_code == 200
    revoked = await bearer_post(h, "/admin/revocations", "admin", "sessions:revoke", {"sub": "bob"})
    assert revoked.json() == {"revoked_families": 0}
    form = {"token": paid.json()["refresh_token"], **h.auth("orchestrator")}
    assert (await h.http.post("/revoke", data=form)).status_code == 200
    jwks += await published(h)

    lines = audit_lines(caplog)
    assert all(list(line) == FIELDS for _, line in lines)
    assert all(line["service"] == "issuer" and line["outcome"] == "ok" for _, line in lines)
    assert [line["event"] for _, line in lines] == [
        "token.client_credentials",
        "sessions.create",
        "token.exchange",
        "token.refresh",
        "token.transact",
        "token.client_credentials",
        "admin.keys.list",
        "admin.keys.rotate",
        "admin.keys.revoke",
        "token.client_credentials",
        "admin.revocations",
        "revoke",
    ]
    by_event = {line["event"]: line for _, line in lines}
    grant = by_event["sessions.create"]
    assert (grant["client_id"], grant["sub"], grant["sid"]) == ("backend", "alice", session["session_id"])
    assert grant["scope"] == "configure read transact"
    assert grant["jti"]
    assert grant["kid"]
    assert grant["exp"]
    exchange, refresh = by_event["token.exchange"], by_event["token.refresh"]
    transact = by_event["token.transact"]
    assert (exchange["client_id"], exchange["sub"], exchange["sid"]) == (
        "orchestrator",
        "alice",
        grant["sid"],
    )
    assert exchange["family"]
    assert refresh["family"] == transact["family"] == exchange["family"]
    assert (exchange["scope"], refresh["scope"], transact["scope"]) == ("read", "configure", "transact")
    assert (refresh["exp"], transact["exp"]) == (h.clock() + 300, h.clock() + 60)
    assert len({exchange["jti"], refresh["jti"], transact["jti"]}) == 3
    assert by_event["admin.keys.rotate"]["client_id"] == "admin"
    assert by_event["admin.keys.rotate"]["kid"]
    assert by_event["admin.keys.revoke"]["kid"] == retiring
    assert by_event["admin.revocations"]["sub"] == "bob"
    assert by_event["admin.revocations"]["reason"] == "revoked_families=0"
    assert by_event["revoke"]["family"] == exchange["family"]

    text = "\n".join(r.getMessage() for r in caplog.records)
    leaked = [value[:12] for value in secrets_of(h, client_keys, jwks) if value in text]
    assert leaked == []
    assert "eyJ" not in text  # no JWT of any kind (tokens, grants, assertions)


async def test_refresh_token_reuse_is_a_warning_naming_family_client_user_and_session(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voicebank.audit")
    first = await h.login()
    assert (await h.refresh(first["refresh_token"])).status_code == 200
    assert (await h.refresh(first["refresh_token"])).status_code == 400

    level, reuse = audit_lines(caplog)[-1]
    assert level == logging.WARNING
    assert (reuse["event"], reuse["outcome"], reuse["reason"]) == (
        "token.refresh",
        "refused",
        "refresh_reused",
    )
    exchange = next(line for _, line in audit_lines(caplog) if line["event"] == "token.exchange")
    assert reuse["family"] == exchange["family"]
    assert reuse["family"]
    assert (reuse["client_id"], reuse["sub"], reuse["sid"]) == ("orchestrator", "alice", exchange["sid"])
    assert [lvl for lvl, _ in audit_lines(caplog)].count(logging.WARNING) == 1


async def test_a_token_presented_by_another_client_is_a_theft_warning_too(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voicebank.audit")
    first = await h.login()
    assert (await h.refresh(first["refresh_token"], client_id="other")).status_code == 400
    level, line = audit_lines(caplog)[-1]
    assert (level, line["reason"], line["client_id"]) == (logging.WARNING, "refresh_wrong_client", "other")
    assert line["sub"] == "alice"
    assert line["family"]


async def test_refusals_are_written_with_what_was_known(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="voicebank.audit")
    assert (await h.http.post("/token", data={"grant_type": "client_credentials"})).status_code == 401
    backend = await h.bearer("backend", "sessions:create")
    forbidden = await h.http.get("/admin/keys", headers={"Authorization": f"Bearer {backend}"})
    assert forbidden.status_code == 403
    anonymous = await h.http.post("/admin/revocations", json={"sid": "x"})
    assert anonymous.status_code == 401
    wrong_scope = await h.token("backend", grant_type="client_credentials", scope="keys:admin")
    assert wrong_scope.status_code == 400

    refused = [(line["event"], line["client_id"], line["reason"]) for _, line in audit_lines(caplog)]
    assert ("token.client_credentials", None, "no_client_auth") in refused
    assert ("admin.keys.list", "backend", "insufficient_scope") in refused
    assert ("admin.revocations", None, "no_token") in refused
    assert ("token.client_credentials", "backend", "invalid_scope") in refused
    outcomes = {line["outcome"] for _, line in audit_lines(caplog) if line["reason"]}
    assert outcomes == {"refused"}


async def test_audit_lines_carry_the_callers_trace_id(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="voicebank.audit")
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    traced = {"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"}
    form = {"grant_type": "client_credentials", "scope": "sessions:create", **h.auth("backend")}
    assert (await h.http.post("/token", data=form, headers=traced)).status_code == 200
    refused = {"grant_type": "client_credentials", "scope": "keys:admin", **h.auth("backend")}
    assert (await h.http.post("/token", data=refused, headers=traced)).status_code == 400
    assert (await h.http.post("/token", data=form | h.auth("backend"))).status_code == 200
    first, second, third = (line for _, line in audit_lines(caplog))
    assert (first["outcome"], second["outcome"]) == ("ok", "refused")
    assert first["trace_id"] == second["trace_id"] == trace_id
    assert third["trace_id"] not in (None, trace_id)
    assert len(third["trace_id"]) == 32


@pytest.mark.parametrize(
    "text",
    [
        "plain-ascii id",
        "".join(map(chr, range(0x80))),  # every control character, quote, backslash and DEL
        "caf\u00e9 \u2028 \U0001f600",  # non-ASCII, a line separator, a character beyond the BMP
        "lone \ud800 surrogate",  # from a JSON escape in a client's text; orjson refuses it
    ],
)
def test_audit_lines_are_the_bytes_json_with_ensure_ascii_writes(text: str) -> None:
    entry = {"event": "token.exchange", "sub": text, "exp": 1_700_000_000, "family": None}
    line = encode_line(entry)
    assert line == json.dumps(entry, separators=(",", ":"), ensure_ascii=True)
    assert line.isascii()
    assert line.isprintable()
    assert json.loads(line) == entry
