"""`voicebank dev-init --dpop-bound`: who must prove a DPoP key, registered in the clients file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator._commands._cli import main

ENV = ("KEYS_PASSPHRASE", "VOICEBANK_STATE", "VOICEBANK_MODE", "KEYS_STORE", "ISSUER_URL", "REDIS_URL",
       "ISSUER_CLIENTS_FILE", "BANK_DB_URL")  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def bound(state: Path) -> dict[str, bool]:
    registry = json.loads((state / "clients.json").read_text())
    return {c["client_id"]: c["dpop_bound_access_tokens"] for c in registry["clients"]}


def test_dev_init_registers_every_client_unbound(tmp_path: Path) -> None:
    assert main(["dev-init", "--state", str(tmp_path)]) == 0
    assert bound(tmp_path) == {"orchestrator": False, "backend": False, "admin": False}


def test_dev_init_binds_the_clients_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dev-init", "--state", str(tmp_path), "--dpop-bound", "orchestrator"]) == 0
    assert bound(tmp_path) == {"orchestrator": True, "backend": False, "admin": False}
    assert "orchestrator DPoP-bound" in capsys.readouterr().out
    # Run again without the option: the registration follows the command line, keys are kept.
    assert main(["dev-init", "--state", str(tmp_path)]) == 0
    assert bound(tmp_path)["orchestrator"] is False


def test_dev_init_refuses_an_unknown_client(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dev-init", "--state", str(tmp_path), "--dpop-bound", "mallory"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "mallory" in err
