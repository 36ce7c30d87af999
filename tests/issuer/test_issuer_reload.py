"""The client registry reloads on SIGHUP: removed or disabled clients are refused from then on."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from issuer import create_app, issuer_state, reload_clients
from tests.support.issuer import Harness


def rewrite(h: Harness, change: object) -> Path:
    path = issuer_state(h.app).settings.clients_file
    data = json.loads(path.read_text())
    data["clients"] = change(data["clients"])  # type: ignore[operator]
    path.write_text(json.dumps(data))
    return path


async def can_authenticate(h: Harness, client_id: str, scope: str = "sessions:create") -> int:
    response = await h.token(client_id, grant_type="client_credentials", scope=scope)
    return response.status_code


async def test_a_removed_client_is_refused_after_the_reload_and_not_before(issuer: Harness) -> None:
    rewrite(issuer, lambda clients: [c for c in clients if c["client_id"] != "backend"])
    assert await can_authenticate(issuer, "backend") == 200  # the file alone changes nothing
    assert reload_clients(issuer.app)
    refused = await issuer.token("backend", grant_type="client_credentials", scope="sessions:create")
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")
    assert await can_authenticate(issuer, "admin", "keys:admin") == 200


async def test_a_disabled_client_is_refused_with_its_refresh_tokens(issuer: Harness) -> None:
    session = await issuer.login()

    def disable(clients: list[dict[str, object]]) -> list[dict[str, object]]:
        return [{**c, "disabled": True} if c["client_id"] == "orchestrator" else c for c in clients]

    rewrite(issuer, disable)
    assert reload_clients(issuer.app)
    refreshed = await issuer.refresh(session["refresh_token"])
    assert (refreshed.status_code, refreshed.json()["error"]) == (401, "invalid_client")
    assert await can_authenticate(issuer, "backend") == 200

    rewrite(issuer, lambda clients: [{**c, "disabled": False} for c in clients])
    assert reload_clients(issuer.app)
    assert (await issuer.refresh(session["refresh_token"])).status_code == 200


@pytest.mark.parametrize("content", ["{not json", '{"clients": [{"client_id": "x"}]}', ""])
async def test_a_broken_file_keeps_the_registry_in_use_and_logs_one_error(
    issuer: Harness, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="issuer.clients")
    issuer_state(issuer.app).settings.clients_file.write_text(content)
    assert not reload_clients(issuer.app)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "previous one stays in use" in errors[0].getMessage()
    assert await can_authenticate(issuer, "backend") == 200


async def test_a_missing_file_keeps_the_registry_too(issuer: Harness) -> None:
    issuer_state(issuer.app).settings.clients_file.unlink()
    assert not reload_clients(issuer.app)
    assert await can_authenticate(issuer, "backend") == 200


def test_reloading_an_app_that_is_not_serving_does_nothing(issuer: Harness) -> None:
    assert not reload_clients(create_app(issuer_state(issuer.app).settings))


async def test_issuer_bearer_tokens_of_a_removed_client_stop_working_at_the_reload(issuer: Harness) -> None:
    token = await issuer.bearer("admin", "keys:admin")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await issuer.http.get("/admin/keys", headers=headers)).status_code == 200
    rewrite(issuer, lambda clients: [c for c in clients if c["client_id"] != "admin"])
    assert reload_clients(issuer.app)
    refused = await issuer.http.get("/admin/keys", headers=headers)
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_token")
