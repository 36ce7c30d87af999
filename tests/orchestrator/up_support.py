"""Real `voicebank` processes for the command tests: `up` on free loopback ports, and one-shot commands."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READY = "Uvicorn running on"
# Variables of the machine or of other tests that would change what a child process serves.
_FOREIGN = ("ISSUER_", "MCP_", "LIVEKIT_", "ORCHESTRATOR_", "KEYS_", "VOICEBANK_", "REDIS_URL", "BANK_DB_URL")


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any voicebank setting, plus `extra`.

    No metrics listeners: their fixed default ports would collide between the tests' processes.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    return env | {"ISSUER_METRICS_PORT": "0", "MCP_METRICS_PORT": "0"} | extra


def voicebank(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run one `voicebank` command to its end, as the console script runs it."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator._commands", *args],
        cwd=ROOT,
        env=clean_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class UpProcess:
    """`voicebank up ARGS` as a child process; `start()` returns once each server it runs is listening."""

    def __init__(self, *args: str, servers: int, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.servers = servers
        self.env = clean_env() if env is None else env
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def _read(self) -> None:
        assert self._process is not None
        assert self._process.stderr is not None
        with self._process.stderr as stream:
            for line in stream:
                self.lines.append(line.rstrip("\n"))
                if sum(READY in seen for seen in self.lines) >= self.servers:
                    self._ready.set()
        self._ready.set()  # it exited: `start` reports how

    def start(self, timeout: float = 90) -> UpProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator._commands", "up", *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout) or self._process.poll() is not None:
            self.stop()
            raise RuntimeError("voicebank up did not start:\n" + "\n".join(self.lines))
        return self

    def stop(self) -> int:
        """SIGTERM, as an operator or an orchestrator stops it; the exit status."""
        assert self._process is not None
        assert self._reader is not None
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
        status = self._process.wait(timeout=60)
        self._reader.join(timeout=10)
        return status
