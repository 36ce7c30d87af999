"""The demo's real processes: the issuer and the MCP server on loopback, started and stopped cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrator._errors import OrchestratorError
from orchestrator._logs import private_opener

__all__ = ["ServiceProcess", "StackError", "free_port", "running_stack"]

READY_LINE = b"Uvicorn running on"
START_TIMEOUT = 30.0


class StackError(OrchestratorError):
    """A demo process could not start; the message names it and where its log is."""

    code = "demo_stack"


def free_port(preferred: int) -> int:
    """`preferred` when it is free on loopback, else any free port."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            chosen: int = sock.getsockname()[1]
            return chosen
    raise StackError("no free loopback port")


@dataclass
class ServiceProcess:
    """One `voicebank up --only NAME` child process and its log file."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    _drain: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout=10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._drain is not None:
            await self._drain


async def _copy(stream: asyncio.StreamReader, log: Path) -> None:
    with open(log, "ab", opener=private_opener) as out:  # noqa: ASYNC230 - a local log file
        while line := await stream.readline():
            out.write(line)
            out.flush()


async def start_service(name: str, args: list[str], env: Mapping[str, str], log_path: Path) -> ServiceProcess:
    """Start `voicebank up --only NAME ...` and wait until it listens (its own 'running' line)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchestrator._commands",
        "up",
        "--only",
        name,
        *args,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    stderr = process.stderr
    service = ServiceProcess(name, process, log_path)
    if stderr is None:  # pragma: no cover - PIPE always gives a stream
        await service.stop()
        raise StackError(f"the {name} has no output stream")
    try:
        async with asyncio.timeout(START_TIMEOUT):
            with open(log_path, "wb", opener=private_opener) as out:  # noqa: ASYNC230 - a local log
                while line := await stderr.readline():
                    out.write(line)
                    if READY_LINE in line:
                        break
                else:
                    raise StackError(f"the {name} exited before it was ready; see {log_path}")
    except TimeoutError:
        await service.stop()
        raise StackError(f"the {name} did not start within {START_TIMEOUT:.0f} s; see {log_path}") from None
    except BaseException:
        await service.stop()
        raise
    service._drain = asyncio.create_task(_copy(stderr, log_path))
    return service


@contextlib.asynccontextmanager
async def running_stack(
    state: Path, *, issuer_port: int, mcp_port: int, extra_env: Mapping[str, str]
) -> AsyncIterator[tuple[str, str]]:
    """The issuer and the MCP server as two processes; yields (issuer URL, MCP resource URL)."""
    issuer_url = f"http://127.0.0.1:{issuer_port}"
    resource_url = f"http://127.0.0.1:{mcp_port}/mcp"
    env = {
        **os.environ,
        **extra_env,
        "VOICEBANK_STATE": str(state),
        "ISSUER_URL": issuer_url,
        "MCP_ISSUER_URL": issuer_url,
        "MCP_RESOURCE_URL": resource_url,
        # Metrics listeners on loopback ports of their own, any free ones: the demo does not show them.
        "ISSUER_METRICS_PORT": str(free_port(0)),
        "MCP_METRICS_PORT": str(free_port(0)),
    }
    common = ["--state", str(state), "--host", "127.0.0.1"]
    services: list[ServiceProcess] = []
    try:
        services.append(
            await start_service(
                "issuer", [*common, "--issuer-port", str(issuer_port)], env, state / "issuer.log"
            )
        )
        services.append(
            await start_service("mcp", [*common, "--mcp-port", str(mcp_port)], env, state / "mcp.log")
        )
        yield issuer_url, resource_url
    finally:
        for service in reversed(services):
            await service.stop()
