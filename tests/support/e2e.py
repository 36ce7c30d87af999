"""The e2e harness: real `voicebank up` processes on loopback around one persistent redis-server.

Each process is a child started with `Popen`; a reader thread copies its output to a log file and signals
readiness when the server prints its listening line, so start-up waits on an event (bounded), never on a
sleep. Two issuer replicas share the Redis key store and claim one issuer URL (replica 0's); two MCP
server replicas share one resource URL (replica 0's), one SQLite bank and Redis; MCP replica 0 fetches
its JWKS from issuer replica 0, MCP replica 1 from issuer replica 1.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import httpx2
from livekit import api as livekit_api
from pydantic import SecretStr
from sqlalchemy import Engine

from issuer import IssuerSettings
from keys import assertion_form, load_client_key
from mcp_server import Bank, make_engine
from orchestrator import CallerIdentity, IssuerClient, RetryPolicy, TokenManager, parse_identity
from orchestrator._commands._dev_init import dev_init
from orchestrator._tokens._dpop import CallKey
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
LISTENING = "Uvicorn running on"
REDIS_READY = "Ready to accept connections"
START_TIMEOUT = 90.0  # a cold interpreter importing fastmcp on a busy 2-core machine
PASSPHRASE = "e2e-passphrase-not-a-secret-0123456789"
LIVEKIT_KEY = "e2e-livekit-key"
LIVEKIT_SECRET = "e2e-livekit-secret-not-a-secret-0123456789abcdef"
ALL_SCOPES = "read transact configure"
MCP_PROTOCOL = "2026-07-28"
_META = {
    "io.modelcontextprotocol/protocolVersion": MCP_PROTOCOL,
    "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


def base_env() -> dict[str, str]:
    """A clean child environment: nothing of ours leaks in from the developer's shell."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Child:
    """One real child process; its output goes to `log_path`, and `ready` is the line that says it serves."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path, ready: str) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.ready_line = ready
        self.process: subprocess.Popen[str] | None = None
        self.starts = 0
        self._reader: threading.Thread | None = None
        self._signal = threading.Event()
        self._ready = False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the process and return once it printed its ready line (bounded by `timeout`)."""
        assert not self.alive, f"{self.name} is already running"
        self._signal.clear()
        self._ready = False
        self.starts += 1
        log = self.log_path.open("a", encoding="utf-8")
        log.write(f"===== {self.name}: start {self.starts}: {' '.join(self.argv)}\n")
        log.flush()
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        assert self.process.stdout is not None
        self._reader = threading.Thread(
            target=self._read, args=(self.process.stdout, log), name=f"e2e-{self.name}", daemon=True
        )
        self._reader.start()
        if not self._signal.wait(timeout):
            self.kill()
            raise RuntimeError(f"{self.name} did not print {self.ready_line!r} within {timeout:.0f} s")
        if not self._ready:
            self.wait_exit()
            raise RuntimeError(f"{self.name} exited before it was ready:\n{self.tail()}")

    def _read(self, stream: IO[str], log: IO[str]) -> None:
        with stream, log:
            for line in stream:
                log.write(line)
                log.flush()
                if not self._ready and self.ready_line in line:
                    self._ready = True
                    self._signal.set()
        self._signal.set()  # end of output: the process is gone

    def wait_exit(self, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        code = self.process.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout=timeout)
        return code

    def kill(self) -> None:
        """SIGKILL: no shutdown code of the child runs."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
        self.wait_exit()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.alive:
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.wait_exit()

    def output(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 60) -> str:
        """The last lines of output, without the per-request noise of the MCP SDK."""
        kept = [line for line in self.output().splitlines() if "Terminating session" not in line]
        return "\n".join(kept[-lines:])


def redis_child(workdir: Path) -> tuple[Child, str]:
    """A redis-server with the append-only file fsynced on every write: a restart keeps every acked write."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not on PATH (Debian: apt-get install redis-server)")
    port = free_port()
    argv = [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "yes",
        "--appendfsync", "always",
        "--dir", str(workdir),
    ]  # fmt: skip
    return Child("redis", argv, base_env(), workdir / "redis.log", REDIS_READY), f"redis://127.0.0.1:{port}/0"


@dataclass
class Stack:
    """The running system: redis, two issuer replicas, two MCP server replicas, one state directory."""

    root: Path
    state: Path
    redis: Child
    redis_url: str
    issuers: list[Child]
    mcps: list[Child]
    issuer_urls: list[str]
    mcp_urls: list[str]
    bank_db_url: str
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def issuer(self) -> str:
        """The one issuer URL every replica claims (`iss`, token endpoint audience)."""
        return self.issuer_urls[0]

    @property
    def resource(self) -> str:
        """The one MCP resource URL every replica serves (`aud` of access tokens)."""
        return self.mcp_urls[0]

    def children(self) -> list[Child]:
        return [self.redis, *self.issuers, *self.mcps]

    def bank(self) -> Bank:
        """The bank as its database sees it, to check balances behind the MCP servers' backs."""
        if self._engine is None:
            self._engine = make_engine(self.bank_db_url)
        return Bank(self._engine)

    def balance(self, user: str = "alice", kind: str = "checking") -> str:
        rows = self.bank().get_balance(user, kind)["accounts"]
        balance: str = next(a["balance"] for a in rows if a["status"] == "open")
        return balance

    def account(self, user: str = "alice", kind: str = "checking") -> str:
        rows = self.bank().get_balance(user, kind)["accounts"]
        account_id: str = next(a["account_id"] for a in rows if a["status"] == "open")
        return account_id

    def payee(self, user: str = "alice") -> str:
        payee_id: str = self.bank().list_payees(user)["payees"][0]["payee_id"]
        return payee_id

    def heal(self) -> None:
        """Restart whatever a previous test left dead, so each test starts from a whole system."""
        if not self.redis.alive:
            self.redis.start()
        for child in [*self.issuers, *self.mcps]:
            if not child.alive:
                child.start()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        # MCP servers first, Redis last: no child logs a spurious lost-connection error on the way out.
        for child in [*self.mcps, *self.issuers, self.redis]:
            child.stop()


def _voicebank(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator._commands", *args]


def _up(only: str, state: Path, issuer_port: int, mcp_port: int) -> list[str]:
    ports = ["--issuer-port", str(issuer_port), "--mcp-port", str(mcp_port)]
    return _voicebank("up", "--only", only, "--state", str(state), "--host", "127.0.0.1", *ports)


def _start_all(children: list[Child]) -> None:
    """Start children concurrently (each waits on its own ready line); raise the first failure."""
    errors: list[BaseException] = []

    def run(child: Child) -> None:
        try:
            child.start()
        except BaseException as exc:  # reported below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in children]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


@dataclass
class StackLayout:
    """Ports and URLs of a stack, chosen before anything starts."""

    issuer_ports: list[int]
    mcp_ports: list[int]

    @classmethod
    def fresh(cls) -> StackLayout:
        return cls([free_port(), free_port()], [free_port(), free_port()])


def start_stack(root: Path) -> Stack:
    """dev-init a state directory, start Redis, the issuer replicas, then the MCP replicas."""
    state = root / "state"
    layout = StackLayout.fresh()
    issuer_urls = [f"http://127.0.0.1:{p}" for p in layout.issuer_ports]
    mcp_urls = [f"http://127.0.0.1:{p}/mcp" for p in layout.mcp_ports]
    bank_db_url = f"sqlite:///{state / 'bank.db'}"
    redis_dir = root / "redis"
    redis_dir.mkdir()
    redis, redis_url = redis_child(redis_dir)
    # dev-init's own code, in-process: a fourth cold interpreter would cost seconds and prove nothing more.
    dev_init(
        IssuerSettings(
            voicebank_state=state,
            keys_store="redis",
            redis_url=redis_url,
            keys_passphrase=SecretStr(PASSPHRASE),
            issuer_clients_file=None,
        ),
        bank_db_url=bank_db_url,
        out=lambda _line: None,
    )
    common = base_env() | {
        "VOICEBANK_STATE": str(state),
        "VOICEBANK_MODE": "prod",
        "ISSUER_URL": issuer_urls[0],
        "MCP_RESOURCE_URL": mcp_urls[0],
        "REDIS_URL": redis_url,
    }
    issuer_env = common | {
        "KEYS_STORE": "redis",
        "KEYS_PASSPHRASE": PASSPHRASE,
        "LIVEKIT_URL": "ws://127.0.0.1:9",  # never dialled: the issuer only signs participant tokens
        "LIVEKIT_API_KEY": LIVEKIT_KEY,
        "LIVEKIT_API_SECRET": LIVEKIT_SECRET,
    }
    logs = root / "logs"
    logs.mkdir()
    issuers = [
        Child(
            f"issuer{i}",
            _up("issuer", state, port, layout.mcp_ports[0]),
            issuer_env | {"ISSUER_METRICS_PORT": str(free_port())},
            logs / f"issuer{i}.log",
            LISTENING,
        )
        for i, port in enumerate(layout.issuer_ports)
    ]
    mcps = [
        Child(
            f"mcp{i}",
            _up("mcp", state, layout.issuer_ports[0], port),
            common
            | {
                "MCP_ISSUER_URL": issuer_urls[0],
                # Each MCP replica fetches keys from its own issuer replica; `iss` stays the shared URL.
                "MCP_JWKS_URL": f"{issuer_urls[i]}/.well-known/jwks.json",
                "BANK_DB_URL": bank_db_url,
                "MCP_METRICS_PORT": str(free_port()),
            },
            logs / f"mcp{i}.log",
            LISTENING,
        )
        for i, port in enumerate(layout.mcp_ports)
    ]
    stack = Stack(root, state, redis, redis_url, issuers, mcps, issuer_urls, mcp_urls, bank_db_url)
    try:
        redis.start()
        _start_all(issuers)
        _start_all(mcps)
    except BaseException:
        stack.close()
        raise
    return stack


class Balancer(httpx.AsyncBaseTransport):
    """A load balancer in front of the issuer replicas: requests for the shared URL go to `target`."""

    def __init__(self, stack: Stack, target: int = 0) -> None:
        self._ports = [httpx.URL(url).port for url in stack.issuer_urls]
        self._inner = httpx.AsyncHTTPTransport()
        self.target = target

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(port=self._ports[self.target])
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class McpReplica(httpx2.AsyncBaseTransport):
    """A load balancer in front of the MCP replicas: the shared resource URL goes to replica `target`.

    The client's request URI stays the shared URL, as behind a real balancer, so DPoP proofs name it.
    """

    def __init__(self, stack: Stack, target: int) -> None:
        self._port = httpx2.URL(stack.mcp_urls[target]).port
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        request.url = request.url.copy_with(port=self._port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def issuer_client(stack: Stack, target: int = 0) -> tuple[httpx.AsyncClient, Balancer]:
    """An HTTP client for the shared issuer URL, routed to replica `target` (switch `balancer.target`)."""
    balancer = Balancer(stack, target)
    return httpx.AsyncClient(transport=balancer, base_url=stack.issuer, timeout=10.0), balancer


async def bearer(http: httpx.AsyncClient, stack: Stack, client_id: str, scope: str) -> str:
    """A client-credentials token (`private_key_jwt` with the dev-init client key) for issuer endpoints."""
    key = load_client_key(stack.state, client_id)
    form = assertion_form(client_id, key, f"{stack.issuer}/token", time.time())
    response = await http.post("/token", data={"grant_type": "client_credentials", "scope": scope, **form})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def new_call(http: httpx.AsyncClient, stack: Stack, user: str = "alice") -> CallerIdentity:
    """Step 1 of the flow: the app backend opens a session; the identity the agent reads from LiveKit."""
    token = await bearer(http, stack, "backend", "sessions:create")
    response = await http.post(
        "/sessions",
        json={"user_id": user, "scope": ALL_SCOPES},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    livekit = response.json()["livekit"]
    # The participant metadata as the agent sees it: inside the LiveKit token the issuer signed.
    claims = livekit_api.TokenVerifier(LIVEKIT_KEY, LIVEKIT_SECRET).verify(livekit["participant_token"])
    return parse_identity(claims.metadata, room_name=livekit["room"])


@asynccontextmanager
async def session_tokens(stack: Stack, target: int) -> AsyncIterator[tuple[TokenManager, Balancer, CallKey]]:
    """A started token manager whose every issuer call goes to replica `target` (switch `balancer.target`),
    with the call's DPoP key its tokens are bound to (the MCP replicas run in prod mode: DPoP required)."""
    http, balancer = issuer_client(stack, target)
    async with http:
        identity = await new_call(http, stack)
        dpop = CallKey()
        client = IssuerClient(
            http,
            issuer=stack.issuer,
            client_id="orchestrator",
            key=load_client_key(stack.state, "orchestrator"),
            retry=RetryPolicy(attempts=1),
            dpop=dpop,
        )
        tokens = TokenManager(client)
        await tokens.start(identity.session_grant, "read")
        yield tokens, balancer, dpop


async def fresh_token(tokens: TokenManager, scope: str = "read") -> str:
    """A newly minted access token (signed with the key active now), not a cached one."""
    tokens.invalidate(scope)
    return await tokens.get_token(scope)


async def mcp_post(
    url: str,
    token: str | None,
    tool: str,
    arguments: dict[str, Any],
    *,
    dpop: CallKey | None = None,
    resource: str | None = None,
    proof: str | None = None,
) -> httpx.Response:
    """A raw stateless `tools/call` POST to one MCP replica, for the HTTP status.

    With `dpop` the token goes as `Authorization: DPoP` with a fresh proof for `resource` (the shared URL
    a balancer would show the client); `proof` sends that very proof instead (a replay).
    """
    headers = {
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": MCP_PROTOCOL,
        "mcp-method": "tools/call",
        "mcp-name": tool,
    }
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if token is not None and (dpop is not None or proof is not None):
        headers["authorization"] = f"DPoP {token}"
        if proof is None and dpop is not None:
            proof = dpop.proof("POST", resource or url, access_token=token)
        headers["dpop"] = proof or ""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": _META},
    }
    async with httpx.AsyncClient(timeout=10.0) as http:
        return await http.post(url, json=body, headers=headers)


def tool_result(response: httpx.Response) -> dict[str, Any]:
    """The structured result of a successful raw `tools/call`."""
    assert response.status_code == 200, (response.status_code, response.text)
    result = response.json()["result"]
    assert not result.get("isError"), result
    data: dict[str, Any] = result["structuredContent"]
    return data


async def admin_keys(stack: Stack, replica: int) -> list[dict[str, Any]]:
    """`GET /admin/keys` on issuer replica `replica`."""
    http, _ = issuer_client(stack, replica)
    async with http:
        token = await bearer(http, stack, "admin", "keys:admin")
        response = await http.get("/admin/keys", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()["keys"]
    return listed


def active_kids(listed: list[dict[str, Any]]) -> list[str]:
    return [k["kid"] for k in listed if k["state"] == "active"]


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    return kid


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str


async def voicebank_cli(stack: Stack, *args: str, limit: float = START_TIMEOUT) -> CliResult:
    """Run the real `voicebank` command line as a child process, against the shared state directory."""
    process = await asyncio.create_subprocess_exec(
        *_voicebank(*args),
        env=base_env() | {"VOICEBANK_STATE": str(stack.state)},
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), limit)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return CliResult(process.returncode, out.decode(errors="replace"))


async def eventually(
    check: Callable[[], Awaitable[bool]], *, attempts: int = 60, pause: float = 0.05
) -> bool:
    """Retry `check` a bounded number of times: for an effect that crosses processes (pub/sub, restarts)."""
    for _ in range(attempts):
        if await check():
            return True
        await asyncio.sleep(pause)
    return False


def log_sections(stack: Stack) -> Iterator[tuple[str, str]]:
    """The tail of every child's log, for a failed test's report."""
    for child in stack.children():
        yield f"e2e {child.name} log (tail)", child.tail()
