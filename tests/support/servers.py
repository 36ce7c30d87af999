"""Real Redis and PostgreSQL servers as child processes on free loopback ports (the suite's shared state)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import TextIO

from tests.support.ports import free_port


def _drain(stream: TextIO) -> None:
    with stream:
        for _ in stream:
            pass


class RedisServer:
    """A real redis-server child process; `restart()` keeps its port so clients can reconnect."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH (Debian: apt-get install redis-server)")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        # Wait on the server's own readiness line rather than polling with sleeps.
        for line in self.process.stdout:
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError("redis-server exited before it was ready")
        # Drain the rest of its output so the pipe never fills up.
        self._drain = threading.Thread(target=_drain, args=(self.process.stdout,), daemon=True)
        self._drain.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self._drain.join(timeout=10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


class PostgresServer:
    """A real PostgreSQL server child process in a throw-away data directory (trust auth, loopback only)."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
        if not found:
            raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self.bin = Path(found[-1]).parent
        self.datadir = Path(tempfile.mkdtemp(prefix="voicebank-pg-"))
        self.port = free_port()
        self.user = "voicebank"
        self.process: subprocess.Popen[str] | None = None
        # PostgreSQL refuses to run as root: as root, run it as the postgres user.
        self._as: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.datadir, "postgres")

    def start(self) -> None:
        subprocess.run(
            [*self._as, str(self.bin / "initdb"), "-D", str(self.datadir / "data"), "-U", self.user,
             "--auth=trust", "--no-sync", "-E", "UTF8"],
            check=True, capture_output=True,
        )  # fmt: skip
        args = [*self._as, str(self.bin / "postgres"), "-D", str(self.datadir / "data"), "-p", str(self.port),
                "-k", str(self.datadir), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]  # fmt: skip
        self.process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        assert self.process.stderr is not None
        # Wait on the server's own readiness line rather than polling with sleeps.
        for line in self.process.stderr:
            if "database system is ready to accept connections" in line:
                break
        else:
            raise RuntimeError("postgres exited before it was ready")
        self._drain = threading.Thread(target=_drain, args=(self.process.stderr,), daemon=True)
        self._drain.start()

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self._drain.join(timeout=10)
            self.process = None
        shutil.rmtree(self.datadir, ignore_errors=True)
