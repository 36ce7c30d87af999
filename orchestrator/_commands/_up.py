"""`voicebank up`: the issuer and the MCP server in one process, and the voice agent when configured."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette

from issuer import IssuerSettings, create_app, metrics_app, preflight
from orchestrator._call._settings import AgentSettings
from orchestrator._commands._serve import ServeError, SharedLoopServer, run_all
from orchestrator._errors import OrchestratorError
from orchestrator._logs import LogSettings, configure_logging
from orchestrator._tracing import tracer_provider

__all__ = [
    "METRICS_HOST",
    "Service",
    "UpError",
    "UpOptions",
    "listening_socket",
    "mcp_issuer_url",
    "service_urls",
    "up",
]

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


METRICS_HOST = "127.0.0.1"  # metrics name internal refusal reasons: they never leave the machine


def listening_socket(host: str, port: int, what: str) -> socket.socket:
    """A socket bound and listening on host:port, or UpError naming the address and the reason."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise UpError(f"cannot listen on {host}:{port} for the {what}: {reason}") from None


@dataclass
class _Part:
    """One service to serve: its app on the public port, its metrics on a loopback port (0: none)."""

    name: str
    url: str
    app: Starlette
    port: int
    metrics: Starlette
    metrics_port: int


def _config(
    app: Starlette, host: str, port: int, log_level: str, lifespan: Literal["on", "off"]
) -> uvicorn.Config:
    # log_config=None: uvicorn installs no handlers; `configure_logging` gives every logger our formatter.
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,
        lifespan=lifespan,
    )


def _parts(options: UpOptions, env: Mapping[str, str]) -> list[_Part]:
    issuer_url, resource_url = service_urls(options, env)
    parts: list[_Part] = []
    if options.only in (None, "issuer"):
        settings = IssuerSettings(issuer_url=issuer_url, mcp_resource_url=resource_url, **_state(options))
        preflight(settings)
        app = create_app(
            settings,
            tracer_provider=tracer_provider("voicebank-issuer", settings.otel_exporter_otlp_endpoint),
        )
        parts.append(
            _Part(
                "issuer", issuer_url, app, options.issuer_port, metrics_app(app), settings.issuer_metrics_port
            )
        )
    if options.only in (None, "mcp"):
        from mcp_server import McpSettings, build_app_from_settings  # FastMCP loads only when served
        from mcp_server import metrics_app as mcp_metrics_app

        mcp = McpSettings(
            mcp_issuer_url=mcp_issuer_url(options, env),
            mcp_resource_url=resource_url,
            **_state(options),
        )
        tracing = tracer_provider("voicebank-mcp", mcp.otel_exporter_otlp_endpoint)
        server = build_app_from_settings(mcp, tracer_provider=tracing)
        parts.append(
            _Part(
                "MCP server",
                resource_url,
                server,
                options.mcp_port,
                mcp_metrics_app(server),
                mcp.mcp_metrics_port,
            )
        )
    return parts


def _servers(options: UpOptions, env: Mapping[str, str]) -> list[uvicorn.Server]:
    """Every listener `options` asks for; UpError, before anything is served, when one cannot listen."""
    parts = _parts(options, env)
    wanted = [(p.name, p.port) for p in parts] + [(f"{p.name} metrics", p.metrics_port) for p in parts]
    seen: dict[int, str] = {}
    for name, port in wanted:
        if port and port in seen:
            raise UpError(f"port {port} is asked for twice: for the {seen[port]} and for the {name}")
        seen[port] = name
    for part in parts:
        # uvicorn binds the public port itself (and says so: the line callers wait for); this checks first.
        listening_socket(options.host, part.port, part.name).close()
    metrics_sockets: list[socket.socket] = []
    try:
        for part in parts:
            if part.metrics_port:
                metrics_sockets.append(
                    listening_socket(METRICS_HOST, part.metrics_port, f"{part.name} metrics")
                )
    except UpError:
        for sock in metrics_sockets:
            sock.close()
        raise
    servers: list[uvicorn.Server] = []
    bound = iter(metrics_sockets)
    for part in parts:
        servers.append(SharedLoopServer(_config(part.app, options.host, part.port, options.log_level, "on")))
        print(_where(part.name, part.url, options.host, part.port), file=sys.stderr)
        if part.metrics_port:
            config = _config(part.metrics, METRICS_HOST, part.metrics_port, options.log_level, "off")
            servers.append(SharedLoopServer(config, sockets=[next(bound)]))
            print(
                f"voicebank up: {part.name} metrics at http://{METRICS_HOST}:{part.metrics_port}/metrics",
                file=sys.stderr,
            )
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


def up(options: UpOptions, env: Mapping[str, str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; the exit status."""
    env = dict(os.environ if env is None else env)
    formatter = LogSettings().formatter()  # a bad LOG_FORMAT fails here, before anything starts
    if options.only == "agent":
        from orchestrator._call._worker import main as worker_main

        return worker_main([], log_level=options.log_level, log_file=options.log_file)
    try:
        servers = _servers(options, env)
    except UpError as exc:
        print(f"voicebank: {exc}", file=sys.stderr)
        return 1
    # After the servers are built: fastmcp installs its own console handlers when it is imported.
    configure_logging(options.log_level, log_file=options.log_file, formatter=formatter)
    agent = _agent_process(options, env) if options.only is None else None
    try:
        run_all(servers)
    except ServeError as exc:
        print(f"voicebank: {exc}", file=sys.stderr)
        return 1
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(timeout=30)
    return 0
