"""`voicebank up`: the issuer and the MCP server in one process, and the voice agent when configured."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import uvicorn

from issuer import IssuerSettings, preflight
from orchestrator._call._settings import AgentSettings
from orchestrator._commands._serve import SharedLoopServer, issuer_server, serve_all
from orchestrator._errors import OrchestratorError

__all__ = ["Service", "UpError", "UpOptions", "mcp_issuer_url", "service_urls", "up"]

Service = Literal["issuer", "mcp", "agent"]


@dataclass(frozen=True)
class UpOptions:
    """What `voicebank up` serves and where."""

    host: str = "127.0.0.1"
    issuer_port: int = 8000
    mcp_port: int = 8001
    state: Path | None = None
    only: Service | None = None
    log_level: str = "info"
    log_file: Path | None = None
    issuer_url: str | None = None
    """`--issuer-url`: the issuer's URL, outranking `ISSUER_URL` and `MCP_ISSUER_URL`."""


class UpError(OrchestratorError):
    """`up` cannot serve what it was asked to; the message is one line for the terminal."""

    code = "up"


def _public_host(host: str) -> str:
    # A wildcard bind address is not a URL anyone can call; name loopback instead.
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - compared, not bound


def service_urls(options: UpOptions, env: Mapping[str, str]) -> tuple[str, str]:
    """The issuer URL and the MCP resource URL: the environment's, else where this process listens."""
    host = _public_host(options.host)
    issuer_url = options.issuer_url or env.get("ISSUER_URL") or f"http://{host}:{options.issuer_port}"
    resource_url = env.get("MCP_RESOURCE_URL") or f"http://{host}:{options.mcp_port}/mcp"
    return issuer_url, resource_url


def mcp_issuer_url(options: UpOptions, env: Mapping[str, str]) -> str:
    """The issuer the MCP server trusts: `--issuer-url`, `MCP_ISSUER_URL`, `ISSUER_URL`, or the one here.

    Served alone, the MCP server has no issuer of its own to default to: guessing the local default port
    would trust whatever answers there.
    """
    named = options.issuer_url or env.get("MCP_ISSUER_URL") or env.get("ISSUER_URL")
    if named:
        return named
    if options.only == "mcp":
        raise UpError("--only mcp needs the issuer's URL: pass --issuer-url URL (or set MCP_ISSUER_URL)")
    return service_urls(options, env)[0]


def _where(name: str, url: str, host: str, port: int) -> str:
    """Where a part listens, and its URL when that is somewhere else (a proxy, a load balancer)."""
    listening = f"http://{_public_host(host)}:{port}"
    if url.startswith(listening + "/") or url == listening:
        return f"voicebank up: {name} at {url}"
    return f"voicebank up: {name} listening on {host}:{port}, reached as {url}"


def _state(options: UpOptions) -> dict[str, Any]:
    return {"voicebank_state": options.state} if options.state is not None else {}


def _servers(options: UpOptions, env: Mapping[str, str]) -> list[uvicorn.Server]:
    issuer_url, resource_url = service_urls(options, env)
    servers: list[uvicorn.Server] = []
    if options.only in (None, "issuer"):
        settings = IssuerSettings(issuer_url=issuer_url, mcp_resource_url=resource_url, **_state(options))
        preflight(settings)
        servers.append(issuer_server(settings, host=options.host, port=options.issuer_port))
        print(_where("issuer", issuer_url, options.host, options.issuer_port), file=sys.stderr)
    if options.only in (None, "mcp"):
        from mcp_server import McpSettings, build_app_from_settings  # FastMCP loads only when served

        mcp = McpSettings(
            mcp_issuer_url=mcp_issuer_url(options, env),
            mcp_resource_url=resource_url,
            **_state(options),
        )
        app = build_app_from_settings(mcp)
        config = uvicorn.Config(
            app, host=options.host, port=options.mcp_port, log_level=options.log_level, lifespan="on"
        )
        servers.append(SharedLoopServer(config))
        print(_where("MCP server", resource_url, options.host, options.mcp_port), file=sys.stderr)
    return servers


def _agent_process(options: UpOptions, env: Mapping[str, str]) -> subprocess.Popen[bytes] | None:
    missing = AgentSettings().missing()
    if missing:
        print(
            "voicebank up: voice agent not started; to start it set " + ", ".join(missing),
            file=sys.stderr,
        )
        return None
    issuer_url, resource_url = service_urls(options, env)
    child_env = {"ISSUER_URL": issuer_url, "MCP_URL": resource_url, **env}
    if options.state is not None:
        child_env["VOICEBANK_STATE"] = str(options.state)
    print("voicebank up: voice agent worker started", file=sys.stderr)
    return subprocess.Popen([sys.executable, "-m", "orchestrator"], env=child_env)


def _configure_logging(options: UpOptions) -> None:
    fmt = "%(asctime)s %(levelname)s %(name)s %(message)s"
    if options.log_file is None:
        logging.basicConfig(level=options.log_level.upper(), format=fmt)
        return
    logging.basicConfig(level=options.log_level.upper(), format=fmt, filename=options.log_file)


def _uvicorn_logs_to_root() -> None:
    # uvicorn gives its loggers console handlers of their own; with --log-file everything goes to the file.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def up(options: UpOptions, env: Mapping[str, str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; the exit status."""
    env = dict(os.environ if env is None else env)
    _configure_logging(options)
    if options.only == "agent":
        from orchestrator._call._worker import main as worker_main

        return worker_main([])
    servers = _servers(options, env)
    if options.log_file is not None:
        _uvicorn_logs_to_root()
    agent = _agent_process(options, env) if options.only is None else None
    try:
        asyncio.run(serve_all(servers))
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(timeout=30)
    return 0
