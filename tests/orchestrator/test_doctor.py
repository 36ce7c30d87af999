"""`voicebank doctor` against a real `voicebank up`: a sound configuration passes, and each test breaks one
item and finds exactly that check failing, with one line that says what is wrong."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from keys import generate_key, write_private_file
from orchestrator._commands import main
from tests.support.up import UpProcess, clean_env, free_port, voicebank

CHECKS = [
    "ISSUER_URL",
    "jwks",
    "mcp server",
    "clients",
    "client keys",
    "issuer keys",
    "redis",
    "database",
    "file modes",
]


class Served:
    """A dev-init state directory and a `voicebank up` serving it on free ports."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.issuer_port, self.mcp_port = free_port(), free_port()
        self.issuer = f"http://127.0.0.1:{self.issuer_port}"
        self.resource = f"http://127.0.0.1:{self.mcp_port}/mcp"

    def env(self) -> dict[str, str]:
        """The configuration the services run with, as the agent and the operator see it."""
        return {
            "VOICEBANK_STATE": str(self.state),
            "ISSUER_URL": self.issuer,
            "MCP_RESOURCE_URL": self.resource,
            "MCP_URL": self.resource,
        }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = Served(tmp_path_factory.mktemp("doctor") / "state")
    assert voicebank("dev-init", "--state", str(served.state)).returncode == 0
    ports = ["--issuer-port", str(served.issuer_port), "--mcp-port", str(served.mcp_port)]
    up = UpProcess("--state", str(served.state), *ports, servers=2, env=clean_env(**served.env())).start()
    try:
        yield served
    finally:
        assert up.stop() == 0


@pytest.fixture
def doctor(served: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Doctor:
    for name in os.environ:
        if name.startswith(("ISSUER_", "MCP_", "KEYS_", "VOICEBANK_", "ORCHESTRATOR_")) or name in (
            "REDIS_URL",
            "BANK_DB_URL",
        ):
            monkeypatch.delenv(name)
    return Doctor(served, monkeypatch, capsys)


class Doctor:
    def __init__(
        self, served: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.served = served
        self.monkeypatch = monkeypatch
        self.capsys = capsys

    def run(self, **changes: str) -> tuple[int, dict[str, str]]:
        """`voicebank doctor` with the served configuration and `changes`: the status, the lines by check."""
        for name, value in (self.served.env() | changes).items():
            self.monkeypatch.setenv(name, value)
        status = main(["doctor"])
        out, err = self.capsys.readouterr()
        assert err == ""
        lines = out.splitlines()
        by_name = {line[5:].split(": ", 1)[0]: line for line in lines}
        assert len(by_name) == len(lines)  # one line per check
        return status, by_name

    def failing(self, **changes: str) -> str:
        """The one failing check's line; every other check still passes."""
        status, lines = self.run(**changes)
        failed = [line for line in lines.values() if line.startswith("FAIL ")]
        assert status == 1
        assert len(failed) == 1, "\n".join(lines.values())
        return failed[0]

    def copy_of_state(self, tmp_path: Path) -> Path:
        copy = tmp_path / "state"
        shutil.copytree(self.served.state, copy)  # modes travel with the files
        os.chmod(copy, 0o700)
        return copy


def test_a_sound_configuration_passes_every_check(doctor: Doctor) -> None:
    status, lines = doctor.run()
    assert status == 0
    assert list(lines) == CHECKS
    assert lines["redis"].startswith("skip redis: REDIS_URL is not set")
    assert [name for name, line in lines.items() if not line.startswith("ok   ")] == ["redis"]
    assert lines["ISSUER_URL"] == f"ok   ISSUER_URL: {doctor.served.issuer} answers as that issuer"


def test_a_wrong_issuer_url_is_named_here_not_at_the_client_as_invalid_client(doctor: Doctor) -> None:
    wrong = f"http://localhost:{doctor.served.issuer_port}"
    status, lines = doctor.run(ISSUER_URL=wrong)
    assert status == 1
    assert lines["ISSUER_URL"] == (
        f"FAIL ISSUER_URL: ISSUER_URL is {wrong} but the issuer there calls itself {doctor.served.issuer}: "
        "clients' assertions and session grants name the wrong issuer (invalid_client)"
    )
    # The MCP server names the issuer it trusts, which is not the one this configuration names.
    assert lines["mcp server"].startswith("FAIL mcp server: ")
    assert f"trusts {doctor.served.issuer}, not ISSUER_URL {wrong}" in lines["mcp server"]


def test_nothing_listening_at_the_issuer_url(doctor: Doctor) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    status, lines = doctor.run(ISSUER_URL=nowhere, MCP_ISSUER_URL=doctor.served.issuer)
    assert status == 1
    assert lines["ISSUER_URL"].startswith(f"FAIL ISSUER_URL: nothing answers at {nowhere}/.well-known/")
    assert lines["ISSUER_URL"].endswith("(ConnectError); is the issuer running?")


def test_an_mcp_issuer_url_that_is_not_the_issuer(doctor: Doctor) -> None:
    elsewhere = f"http://127.0.0.1:{doctor.served.mcp_port}"  # the MCP server, not an issuer
    status, lines = doctor.run(MCP_ISSUER_URL=elsewhere)
    assert status == 1
    assert lines["MCP_ISSUER_URL"] == (
        f"FAIL MCP_ISSUER_URL: {elsewhere} answers HTTP 404 without issuer metadata; is the issuer running?"
    )


def test_an_unreachable_jwks(doctor: Doctor) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"
    line = doctor.failing(MCP_JWKS_URL=nowhere)
    assert line.startswith(f"FAIL jwks: nothing answers at {nowhere} (ConnectError)")
    assert line.endswith("the MCP server cannot verify any token")


def test_a_jwks_url_that_serves_no_keys(doctor: Doctor) -> None:
    wrong = f"{doctor.served.issuer}/.well-known/oauth-authorization-server"
    assert doctor.failing(MCP_JWKS_URL=wrong) == f"FAIL jwks: {wrong} holds no usable public key"


def test_an_mcp_url_that_reaches_no_mcp_server(doctor: Doctor) -> None:
    wrong = f"{doctor.served.issuer}/mcp"
    line = doctor.failing(MCP_URL=wrong)
    assert line == (
        f"FAIL mcp server: {doctor.served.issuer}/.well-known/oauth-protected-resource/mcp answers HTTP 404 "
        "without resource metadata"
    )


def test_tokens_for_another_resource_than_the_mcp_server_serves(doctor: Doctor) -> None:
    line = doctor.failing(MCP_RESOURCE_URL="https://mcp.example/mcp")
    assert line == (
        f"FAIL mcp server: the MCP server at {doctor.served.resource} is the resource "
        f"{doctor.served.resource}, but tokens are for MCP_RESOURCE_URL https://mcp.example/mcp: "
        "it would refuse them (wrong audience)"
    )


def test_an_invalid_clients_file(doctor: Doctor, tmp_path: Path) -> None:
    broken = tmp_path / "clients.json"
    broken.write_text(
        json.dumps({"clients": [{"client_id": "backend", "grant_types": ["client_credentials"]}]})
    )
    line = doctor.failing(ISSUER_CLIENTS_FILE=str(broken))
    assert line.startswith(f"FAIL clients: {broken}: clients.0.scope: Field required")
    assert line.endswith("(run `voicebank dev-init` or set ISSUER_CLIENTS_FILE)")


def test_a_client_key_that_is_not_the_registered_one(doctor: Doctor, tmp_path: Path) -> None:
    stranger = tmp_path / "orchestrator.pem"
    write_private_file(stranger, generate_key("ES256").private_pem(None))
    line = doctor.failing(ORCHESTRATOR_CLIENT_KEY=str(stranger))
    assert line == (
        f"FAIL client keys: {stranger} is not a key registered for 'orchestrator': "
        "the issuer would refuse it (invalid_client)"
    )


def test_issuer_keys_that_do_not_decrypt_with_the_passphrase(doctor: Doctor) -> None:
    line = doctor.failing(KEYS_PASSPHRASE="not-the-passphrase")
    assert line.startswith("FAIL issuer keys: ")
    assert "wrong passphrase (KEYS_PASSPHRASE)" in line
    assert "not-the-passphrase" not in line


def test_no_key_ring_at_all(doctor: Doctor, tmp_path: Path) -> None:
    state = doctor.copy_of_state(tmp_path)
    shutil.rmtree(state / "keys")
    line = doctor.failing(VOICEBANK_STATE=str(state))
    assert line == (
        f"FAIL issuer keys: no key ring in {state / 'keys'} "
        "(run `voicebank dev-init`, or start the issuer once)"
    )
    assert not (state / "keys").exists()  # the doctor looked, and created nothing


def test_redis_that_answers_and_redis_that_does_not(doctor: Doctor, redis_url: str) -> None:
    status, lines = doctor.run(REDIS_URL=redis_url)
    assert status == 0
    assert lines["redis"] == f"ok   redis: REDIS_URL {redis_url} answers"
    nowhere = f"redis://:a-redis-password@127.0.0.1:{free_port()}/0"
    line = doctor.failing(REDIS_URL=nowhere)
    assert line.startswith("FAIL redis: REDIS_URL redis://***@127.0.0.1:")
    assert "a-redis-password" not in line


def test_a_missing_bank_database(doctor: Doctor, tmp_path: Path) -> None:
    line = doctor.failing(BANK_DB_URL=f"sqlite:///{tmp_path / 'nothing.db'}")
    assert line == f"FAIL database: no bank database at {tmp_path / 'nothing.db'} (run `voicebank dev-init`)"
    assert not (tmp_path / "nothing.db").exists()


def test_a_database_without_the_bank_and_one_that_does_not_answer(doctor: Doctor, postgres_url: str) -> None:
    empty = doctor.failing(BANK_DB_URL=postgres_url)
    assert empty.startswith("FAIL database: postgresql+psycopg://***@127.0.0.1:")
    assert empty.endswith("does not answer or has no bank tables (UndefinedTable)")
    nowhere = f"postgresql+psycopg://voicebank:a-db-password@127.0.0.1:{free_port()}/bank"
    down = doctor.failing(BANK_DB_URL=nowhere)
    assert down.endswith("does not answer or has no bank tables (OperationalError)")
    assert "a-db-password" not in down


@pytest.mark.parametrize(("where", "mode"), [("clients.json", 0o644), ("keys", 0o755), (".", 0o750)])
def test_state_files_others_can_read(doctor: Doctor, tmp_path: Path, where: str, mode: int) -> None:
    state = doctor.copy_of_state(tmp_path)
    os.chmod(state / where, mode)
    line = doctor.failing(VOICEBANK_STATE=str(state))
    shown = state if where == "." else state / where
    wanted = "0600" if where == "clients.json" else "0700"
    assert line == f"FAIL file modes: {shown} is {mode:04o}, not {wanted}"


def test_doctor_exits_non_zero_as_a_process(served: Served) -> None:
    done = voicebank("doctor", env=clean_env(**served.env(), KEYS_PASSPHRASE="wrong"))
    assert done.returncode == 1
    assert "FAIL issuer keys: " in done.stdout
    assert len(done.stdout.splitlines()) == len(CHECKS)
    assert done.stderr == ""
