"""Real `voicebank` child processes for the command-line tests: output read by a thread, waits bounded."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WAIT = 90.0  # a cold interpreter importing fastmcp on a busy 2-core machine
LISTENING = b"Uvicorn running on"
# What root must give up for file permissions to apply to it (the tests may run as root).
_DAC = "-dac_override,-dac_read_search"


def child_env(**extra: str) -> dict[str, str]:
    """The environment without our settings or the agent's (which would start a worker)."""
    ours = ("MCP_", "ISSUER_", "LIVEKIT_", "ORCHESTRATOR_", "KEYS_", "REDIS_", "VOICEBANK_", "BANK_")
    kept = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    return kept | {"PYTHONUNBUFFERED": "1"} | extra


def voicebank(*args: str, unprivileged: bool = False) -> list[str]:
    """The argv of `voicebank ARGS`; `unprivileged`: file permissions bind it even under root."""
    argv = [sys.executable, "-m", "orchestrator._commands", *args]
    if unprivileged and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv is not None, "setpriv (util-linux) is needed to drop root's file-permission override"
        argv = [setpriv, f"--bounding-set={_DAC}", *argv]
    return argv


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a command that is expected to end by itself."""
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=WAIT, check=False)


class Output:
    """A child's stderr, collected by a thread; `wait_for` blocks until a line matches (or the child ends)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None
        self.lines: list[bytes] = []
        self._done = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream: Iterator[bytes]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._done = True
            self._changed.notify_all()

    def wait_for(self, match: Callable[[list[bytes]], bool], what: str) -> None:
        with self._changed:
            ended = self._changed.wait_for(lambda: match(self.lines) or self._done, timeout=WAIT)
            if not match(self.lines):
                text = b"".join(self.lines).decode(errors="replace")
                raise AssertionError(f"no {what} within {WAIT:.0f} s{' (exited)' if ended else ''}:\n{text}")

    def has(self, needle: bytes) -> None:
        self.wait_for(lambda lines: any(needle in line for line in lines), repr(needle))

    def text(self) -> bytes:
        with self._changed:
            return b"".join(self.lines)

    def join(self) -> None:
        self._thread.join(timeout=WAIT)


class Serving:
    """A `voicebank up` child, started and waited for until its public servers listen."""

    def __init__(self, argv: list[str], env: dict[str, str], listeners: int) -> None:
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.output = Output(self.process)
        try:
            self.output.wait_for(
                lambda lines: sum(LISTENING in line for line in lines) == listeners, "listening"
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=WAIT)
        self.output.join()
        assert self.process.stderr is not None
        self.process.stderr.close()
        return code
