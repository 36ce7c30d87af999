"""`voicebank dev-init`, `keys list|rotate|revoke` and the CLI's one-line errors, run in-process."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from pathlib import Path

import httpx
import pytest

from issuer import IssuerSettings, create_app
from keys import KeyPair
from orchestrator._commands._cli import main
from orchestrator._commands._keys_admin import AdminCommandError, keys_command
from tests.support.clock import FakeClock
from tests.support.issuer import ISSUER, never
from tests.support.ports import free_port

ENV = ("KEYS_PASSPHRASE", "VOICEBANK_STATE", "VOICEBANK_MODE", "KEYS_STORE", "ISSUER_URL", "REDIS_URL",
       "ISSUER_CLIENTS_FILE", "BANK_DB_URL")  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_dev_init_creates_the_state_and_is_idempotent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "var"
    assert main(["dev-init", "--state", str(state)]) == 0
    assert mode(state / "passphrase") == 0o600
    registry = json.loads((state / "clients.json").read_text())
    clients = {c["client_id"]: c for c in registry["clients"]}
    assert clients["orchestrator"]["scope"] == "read transact configure"
    assert clients["backend"]["grant_types"] == ["client_credentials"]
    assert clients["admin"]["scope"] == "keys:admin"
    pems = {cid: (state / "clients" / f"{cid}.pem").read_bytes() for cid in clients}
    for cid, pem in pems.items():
        assert mode(state / "clients" / f"{cid}.pem") == 0o600
        assert KeyPair.from_pem(pem, None).kid == clients[cid]["jwks"]["keys"][0]["kid"]
    assert (state / "keys" / "keyring.json").is_file()
    assert (state / "bank.db").is_file()
    ring = (state / "keys" / "keyring.json").read_text()
    out = capsys.readouterr().out
    assert "PRIVATE KEY" not in out

    assert main(["dev-init", "--state", str(state)]) == 0
    assert (state / "keys" / "keyring.json").read_text() == ring
    assert {cid: (state / "clients" / f"{cid}.pem").read_bytes() for cid in clients} == pems
    assert "kept" in capsys.readouterr().out

    assert main(["dev-init", "--state", str(state), "--force"]) == 0
    assert (state / "clients" / "admin.pem").read_bytes() != pems["admin"]


def test_dev_init_uses_keys_passphrase_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYS_PASSPHRASE", "from-the-environment")
    assert main(["dev-init", "--state", str(tmp_path)]) == 0
    assert not (tmp_path / "passphrase").exists()


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--state", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "dev-init" in err

    assert main(["keys", "--state", str(tmp_path), "list"]) == 1
    assert "dev-init" in capsys.readouterr().err

    assert main(["dev-init", "--state", str(tmp_path)]) == 0
    capsys.readouterr()
    issuer = f"http://127.0.0.1:{free_port()}"
    assert main(["keys", "--issuer", issuer, "--state", str(tmp_path), "list"]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach the issuer at {issuer}" in err
    assert err.count("\n") == 1

    with pytest.raises(SystemExit) as exit_info:
        main(["keys", "revoke"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("voicebank: ")


def test_prod_without_passphrase_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VOICEBANK_MODE", "prod")
    assert main(["up", "--state", str(tmp_path)]) == 1
    assert "KEYS_PASSPHRASE" in capsys.readouterr().err


async def test_keys_commands_against_an_in_process_issuer(tmp_path: Path) -> None:
    assert await asyncio.to_thread(main, ["dev-init", "--state", str(tmp_path)]) == 0
    clock = FakeClock(time.time())  # dev-init made the ring at real time
    app = create_app(
        IssuerSettings(voicebank_state=tmp_path, issuer_url=ISSUER), clock=clock, rotation_sleep=never
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)

        async def run(action: str, *, kid: str | None = None, force: bool = False) -> str:
            return await keys_command(
                action,
                issuer_url=ISSUER,
                state=tmp_path,
                kid=kid,
                force=force,
                transport=transport,
                clock=clock,
            )

        table = await run("list")
        lines = table.splitlines()
        assert lines[0].split()[:3] == ["KID", "ALG", "STATE"]
        assert len(lines) == 3
        active = next(line.split()[0] for line in lines if " active " in line)

        with pytest.raises(AdminCommandError, match="next_key_too_young"):
            await run("rotate")
        assert "retiring" in await run("rotate", force=True)
        assert " revoked " in await run("revoke", kid=active)
        with pytest.raises(AdminCommandError, match="not_found"):
            await run("revoke", kid="nope")


def test_dev_init_seeds_the_bank_at_bank_db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere.db"
    monkeypatch.setenv("BANK_DB_URL", f"sqlite:///{elsewhere}")
    assert main(["dev-init", "--state", str(tmp_path / "state")]) == 0
    assert elsewhere.is_file()
    assert not (tmp_path / "state" / "bank.db").exists()
