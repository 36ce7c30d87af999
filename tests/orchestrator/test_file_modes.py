"""The state directory is 0700 and every file the system writes in it 0600 (keys, clients, the bank with its
SQLite journals, logs), whether or not the process umask is strict."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from issuer import IssuerSettings
from mcp_server import Bank, make_engine
from mcp_server._bank._db import sqlite_url
from orchestrator._commands import main
from orchestrator._commands._dev_init import dev_init
from orchestrator._logs import logging_configured


@pytest.fixture(autouse=True)
def loose_umask() -> Iterator[None]:
    """The most common umask: files 0644 unless the code asks for less."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def modes(root: Path) -> dict[str, int]:
    """Every directory and file under `root` (itself included) and its permission bits."""
    found = {".": root.stat().st_mode & 0o777}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            found[str(path.relative_to(root))] = path.stat().st_mode & 0o777
    return found


def assert_private(root: Path) -> None:
    for name, mode in modes(root).items():
        expected = 0o700 if (root / name).is_dir() else 0o600
        assert mode == expected, f"{name} is {mode:o}"


def test_regression_dev_init_writes_only_private_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    dev_init(IssuerSettings(voicebank_state=state), out=lambda _: None)
    found = modes(state)
    for name in ("passphrase", "clients.json", "clients/admin.pem", "keys/keyring.json", "bank.db"):
        assert name in found
    assert_private(state)


def test_regression_the_cli_tightens_an_existing_loose_state_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    (state / "bank.db").touch(mode=0o644)  # left by an older version
    assert main(["dev-init", "--state", str(state)]) == 0
    assert "bank: seeded" in capsys.readouterr().out
    assert_private(state)
    assert os.umask(0o022) == 0o022  # the command restored the caller's umask


def test_regression_real_bank_writes_keep_the_database_and_its_journals_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    dev_init(IssuerSettings(voicebank_state=state), out=lambda _: None)
    engine = make_engine(sqlite_url(state))
    try:
        bank = Bank(engine)
        account = bank.get_balance("alice", "checking")["accounts"][0]["account_id"]
        payee = bank.list_payees("alice")["payees"][0]["payee_id"]
        bank.make_payment("alice", account, payee, "1.00", "modes-1")
        # While the engine holds its connection, SQLite keeps the write-ahead log and shared memory files.
        assert {"bank.db-wal", "bank.db-shm"} <= set(modes(state))
        assert_private(state)
    finally:
        engine.dispose()


def test_regression_loose_database_journals_from_before_are_tightened(tmp_path: Path) -> None:
    for name in ("bank.db", "bank.db-wal", "bank.db-shm"):
        (tmp_path / name).touch(mode=0o644)
    make_engine(sqlite_url(tmp_path)).dispose()
    assert_private(tmp_path)


def test_regression_log_files_are_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    dev_init(IssuerSettings(voicebank_state=state), out=lambda _: None)
    with logging_configured("INFO", log_file=state / "up.log"):
        logging.getLogger("voicebank.test").info("written")
    assert (state / "up.log").read_text().endswith("INFO voicebank.test written\n")
    assert_private(state)
