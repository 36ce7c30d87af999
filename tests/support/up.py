"""`voicebank up` and one-shot `voicebank` commands for the command tests, on `process_support`'s children."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from tests.support.ports import free_port
from tests.support.process import ROOT, Serving, child_env, run
from tests.support.process import voicebank as argv_of

__all__ = ["ROOT", "UpProcess", "clean_env", "free_port", "tool_call", "voicebank"]

# No metrics listeners: their fixed default ports would collide between the tests' processes.
_NO_METRICS = {"ISSUER_METRICS_PORT": "0", "MCP_METRICS_PORT": "0"}


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any voicebank setting, no metrics listeners, plus `extra`."""
    return child_env(**(_NO_METRICS | extra))


def voicebank(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run one `voicebank` command to its end, as the console script runs it."""
    return run(argv_of(*args), dict(clean_env() if env is None else env))


def tool_call(token: str, tool: str, arguments: Mapping[str, object]) -> dict[str, object]:
    """The keyword arguments of a raw `tools/call` POST with a bearer token: `json` and `headers`."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    headers = {
        "authorization": f"Bearer {token}",
        "accept": "application/json, text/event-stream",
        "mcp-method": "tools/call",
        "mcp-name": tool,
    }
    return {"json": body, "headers": headers}


class UpProcess:
    """`voicebank up ARGS` as a child process; `start()` returns once its `servers` public servers listen."""

    def __init__(self, *args: str, servers: int, env: Mapping[str, str] | None = None) -> None:
        self._argv = argv_of("up", *args)
        self._servers = servers
        self._env = dict(clean_env() if env is None else env)
        self._serving: Serving | None = None

    def start(self) -> UpProcess:
        self._serving = Serving(self._argv, self._env, self._servers)
        return self

    @property
    def _running(self) -> Serving:
        assert self._serving is not None, "start() first"
        return self._serving

    @property
    def pid(self) -> int:
        return self._running.process.pid

    @property
    def lines(self) -> list[str]:
        return self._running.output.text().decode(errors="replace").splitlines()

    def mark(self) -> int:
        """Where its log is now, for `wait_for`."""
        return len(self._running.output.lines)

    def wait_for(self, text: str, since: int) -> None:
        """Block until a line written after `since` (a `mark()`) holds `text`: an effect the process logs."""
        needle = text.encode()
        self._running.output.wait_for(lambda lines: any(needle in line for line in lines[since:]), repr(text))

    def stop(self) -> int:
        """SIGTERM, as an operator or an orchestrator stops it; the exit status."""
        return self._running.stop()
