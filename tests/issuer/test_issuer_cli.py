"""`voicebank dev-init`, `keys list|rotate|revoke` and the CLI's one-line errors, run in-process."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from pathlib import Path

import httpx
import pytest

from issuer import IssuerSettings, create_app, issuer_state
from keys import KeyPair
from orchestrator._commands._cli import main
from orchestrator._commands._keys_admin import AdminCommandError, keys_command, revoke_sessions
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
    assert clients["admin"]["scope"] == "keys:admin sessions:revoke"
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


async def test_sessions_revoke_against_an_in_process_issuer(tmp_path: Path) -> None:
    assert await asyncio.to_thread(main, ["dev-init", "--state", str(tmp_path)]) == 0
    clock = FakeClock(time.time())
    app = create_app(
        IssuerSettings(voicebank_state=tmp_path, issuer_url=ISSUER), clock=clock, rotation_sleep=never
    )
    async with app.router.lifespan_context(app):
        families = issuer_state(app).refresh
        token = await families.create(
            client_id="orchestrator", sub="alice", sid="room-1", scope="read", now=clock()
        )
        transport = httpx.ASGITransport(app=app)

        async def run(**target: str) -> str:
            return await revoke_sessions(
                target, issuer_url=ISSUER, state=tmp_path, transport=transport, clock=clock
            )

        assert await run(sid="room-2") == "revoked 0 refresh-token families of sid room-2"
        assert await run(sub="alice") == "revoked 1 refresh-token family of sub alice"
        assert await families.peek(token) is None
        assert (
            await run(client_id="orchestrator")
            == "revoked 0 refresh-token families of client_id orchestrator"
        )
        with pytest.raises(AdminCommandError, match="invalid_request"):
            await run(sid="a", sub="b")


def test_sessions_revoke_without_an_issuer_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dev-init", "--state", str(tmp_path)]) == 0
    capsys.readouterr()
    issuer = f"http://127.0.0.1:{free_port()}"
    assert main(["sessions", "revoke", "--issuer", issuer, "--state", str(tmp_path), "--user", "alice"]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach the issuer at {issuer}" in err
    assert err.count("\n") == 1


async def test_keys_rotate_alg_and_retire_against_an_in_process_issuer(tmp_path: Path) -> None:
    assert await asyncio.to_thread(main, ["dev-init", "--state", str(tmp_path)]) == 0
    clock = FakeClock(time.time())
    app = create_app(
        IssuerSettings(voicebank_state=tmp_path, issuer_url=ISSUER), clock=clock, rotation_sleep=never
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)

        async def run(action: str, alg: str) -> str:
            return await keys_command(
                action, issuer_url=ISSUER, state=tmp_path, alg=alg, transport=transport, clock=clock
            )

        prepared = [line.split()[1:3] for line in (await run("rotate", "EdDSA")).splitlines()[1:]]
        assert sorted(prepared) == [["ES256", "active"], ["ES256", "next"], ["EdDSA", "next"]]
        with pytest.raises(AdminCommandError, match="algorithm_in_use"):
            await run("retire", "ES256")
        with pytest.raises(AdminCommandError, match="no_signing_key"):
            await run("retire", "EdDSA")


def test_keys_retire_needs_an_algorithm(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["keys", "retire"])
    assert exit_info.value.code == 2
    assert "--alg" in capsys.readouterr().err


def test_regression_a_kid_starting_with_a_dash_can_be_revoked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A kid is base64url: one in 64 starts with "-", and argparse took it for an unknown option, so
    # `voicebank keys revoke KID` failed with a usage error (seen as a flake of the e2e revocation test).
    assert main(["dev-init", "--state", str(tmp_path)]) == 0
    capsys.readouterr()
    issuer = f"http://127.0.0.1:{free_port()}"
    kid = "-gD5ZpXo8WgP3eq1n2yJj0m2VQnQ1bZpS1c5V7mSLQk"
    for argv in (
        ["keys", "revoke", kid, "--issuer", issuer, "--state", str(tmp_path)],
        ["keys", "--issuer", issuer, "--state", str(tmp_path), "revoke", kid],
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"voicebank: cannot reach the issuer at {issuer}")  # parsed, then tried


@pytest.mark.parametrize(
    "argv",
    [
        ["keys", "revoke"],
        ["keys", "list", "--bogus"],
        ["keys", "revoke", "a", "-b"],
        ["dev-init", "x"],
        ["sessions", "revoke"],  # exactly one of --sid, --user, --client
        ["sessions", "revoke", "--sid", "a", "--user", "b"],
        ["sessions", "revoke", "--client"],
        ["sessions"],
    ],
)
def test_the_cli_refuses_what_it_does_not_know_in_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("voicebank: ")
    assert err.count("\n") == 1
