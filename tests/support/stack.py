"""The whole token path in-process: the real issuer, the MCP server fetching its JWKS, the real clients."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import httpx2
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from opentelemetry.trace import TracerProvider
from sqlalchemy import Engine, MetaData, select

from issuer import create_app as create_issuer
from keys import KeyPair, assertion_form, generate_key
from mcp_server import Bank, McpSettings, build_app_from_settings, create_schema, make_engine, seed
from orchestrator import IssuerClient, McpBank, Movement, RetryPolicy, TokenManager
from tests.support.clock import FakeClock
from tests.support.issuer import ISSUER, RESOURCE, TOKEN_ENDPOINT, issuer_settings, never
from tests.support.lifespan import running
from tests.support.mcp import BASE, METADATA
from tests.support.registry import ALL_SCOPES, write_client_registry

INVALID_TOKEN = f'Bearer error="invalid_token", resource_metadata="{METADATA}"'
JWKS_PATH = "/.well-known/jwks.json"
_PROTOCOL = "2026-07-28"
_META = {
    "io.modelcontextprotocol/protocolVersion": _PROTOCOL,
    "io.modelcontextprotocol/clientInfo": {"name": "integration", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


class IssuerLink(httpx.AsyncBaseTransport):
    """The MCP server's wire to the real issuer app: counts JWKS fetches; `down` refuses connections."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.down = False
        self.jwks_fetches = 0  # requests that reached the issuer
        self.refused = 0  # requests refused while down

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            self.refused += 1
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path == JWKS_PATH:
            self.jwks_fetches += 1
        return await self.inner.handle_async_request(request)


def bound(tool: str, arguments: dict[str, Any], currency: str = "USD") -> Movement:
    """The movement a transact token for exactly this call is bound to (what the user confirmed)."""
    kind, target = ("payment", "payee_id") if tool == "make_payment" else ("transfer", "to_account_id")
    return Movement(
        kind,
        arguments["from_account_id"],
        arguments[target],
        arguments["amount"],
        currency,
        arguments["idempotency_key"],
    )


def b64_json(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def segment(token: str, index: int) -> dict[str, Any]:
    """The decoded header (0) or payload (1) of a compact JWS, for building derived tokens."""
    part = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def kid_of(token: str) -> str:
    kid: str = segment(token, 0)["kid"]
    return kid


def with_header(token: str, **changes: Any) -> str:
    """The token with header members changed (None removes one); payload and signature kept."""
    header = {k: v for k, v in (segment(token, 0) | changes).items() if v is not None}
    _, payload, signature = token.split(".")
    return ".".join([b64_json(header), payload, signature])


def with_claims(token: str, **changes: Any) -> str:
    """The token with claims changed; header and signature kept."""
    header, _, signature = token.split(".")
    return ".".join([header, b64_json(segment(token, 1) | changes), signature])


def rpc(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A JSON-RPC `tools/call` as the 2026-07-28 protocol sends it (stateless: no initialize needed)."""
    params = {"name": tool, "arguments": arguments, "_meta": _META}
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: equal snapshots mean no tool wrote anything."""
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        return {
            name: sorted(tuple(row) for row in conn.execute(select(table)))
            for name, table in sorted(meta.tables.items())
        }


@dataclass
class Stack:
    """A running issuer and MCP server, and the clients of the flow around them."""

    clock: FakeClock
    client_keys: dict[str, KeyPair]
    issuer_app: Any
    mcp_app: Any
    link: IssuerLink
    issuer_http: httpx.AsyncClient  # the backend's, admin's and orchestrator's wire to the issuer
    mcp_http: httpx2.AsyncClient  # raw HTTP to the MCP server, for statuses and headers
    engine: Engine
    exits: AsyncExitStack
    banks: list[McpBank] = field(default_factory=list)

    @property
    def bank(self) -> Bank:
        """The bank as the database sees it, to check balances behind the MCP server's back."""
        return Bank(self.engine, clock=self.clock)

    def balance(self, user: str = "alice", kind: str = "checking") -> str:
        rows = self.bank.get_balance(user, kind)["accounts"]
        balance: str = next(a["balance"] for a in rows if a["status"] == "open")
        return balance

    def account(self, user: str = "alice", kind: str = "checking") -> str:
        rows = self.bank.get_balance(user, kind)["accounts"]
        account_id: str = next(a["account_id"] for a in rows if a["status"] == "open")
        return account_id

    def payee(self, user: str = "alice") -> str:
        payee_id: str = self.bank.list_payees(user)["payees"][0]["payee_id"]
        return payee_id

    async def bearer(self, client_id: str, scope: str) -> str:
        """A client-credentials token for the issuer's own endpoints, with `private_key_jwt`."""
        form = assertion_form(client_id, self.client_keys[client_id], TOKEN_ENDPOINT, self.clock())
        response = await self.issuer_http.post(
            "/token", data={"grant_type": "client_credentials", "scope": scope, **form}
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def session_grant(self, user: str = "alice", scope: str = ALL_SCOPES) -> str:
        """Step 1 of the flow: the user's app backend opens a voice session."""
        bearer = await self.bearer("backend", "sessions:create")
        response = await self.issuer_http.post(
            "/sessions",
            json={"user_id": user, "scope": scope},
            headers={"Authorization": f"Bearer {bearer}"},
        )
        assert response.status_code == 201, response.text
        grant: str = response.json()["session_grant"]
        return grant

    async def tokens(self, user: str = "alice", scope: str = ALL_SCOPES) -> TokenManager:
        """Step 2: the orchestrator exchanges the grant and holds the rotating refresh token."""
        client = IssuerClient(
            self.issuer_http,
            issuer=ISSUER,
            client_id="orchestrator",
            key=self.client_keys["orchestrator"],
            retry=RetryPolicy(attempts=1),
            clock=self.clock,
        )
        manager = TokenManager(client, clock=self.clock)
        await manager.start(await self.session_grant(user, scope), "read")
        return manager

    async def mcp_bank(self, user: str = "alice") -> McpBank:
        """The orchestrator's real MCP client for one session."""
        bank = McpBank(await self.tokens(user), RESOURCE, transport=httpx2.ASGITransport(app=self.mcp_app))
        self.banks.append(bank)
        return bank

    async def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An admin API call with a fresh `keys:admin` bearer."""
        bearer = await self.bearer("admin", "keys:admin")
        headers = {"Authorization": f"Bearer {bearer}"}
        return await self.issuer_http.request(method, path, headers=headers, **kwargs)

    async def active_kid(self) -> str:
        listed = (await self.admin("GET", "/admin/keys")).json()["keys"]
        kid: str = next(k["kid"] for k in listed if k["state"] == "active")
        return kid

    async def rotate(self) -> None:
        response = await self.admin("POST", "/admin/keys/rotate", json={"force": True})
        assert response.status_code == 200, response.text

    async def revoke(self, kid: str) -> None:
        response = await self.admin("POST", f"/admin/keys/{kid}/revoke")
        assert response.status_code == 200, response.text

    def mcp_client(self, token: str) -> Client[StreamableHttpTransport]:
        """The real FastMCP client over streamable HTTP, in-process, with a bearer token."""

        def factory(
            headers: dict[str, str] | None = None,
            timeout: httpx2.Timeout | None = None,
            auth: httpx2.Auth | None = None,
            **_: Any,  # FastMCP also asks to follow redirects: in-process there are none
        ) -> httpx2.AsyncClient:
            transport = httpx2.ASGITransport(app=self.mcp_app)
            return httpx2.AsyncClient(
                transport=transport, base_url=BASE, headers=headers, timeout=timeout, auth=auth
            )

        return Client(StreamableHttpTransport(RESOURCE, httpx_client_factory=factory, auth=token))

    async def call(self, token: str, tool: str, **arguments: Any) -> dict[str, Any]:
        """One tool call through the FastMCP client; its structured result."""
        async with self.mcp_client(token) as client:
            result = await client.call_tool(tool, arguments)
        assert isinstance(result.structured_content, dict)
        return result.structured_content

    async def post(self, token: str | None, tool: str, arguments: dict[str, Any]) -> httpx2.Response:
        """A raw `tools/call` POST to /mcp, for the HTTP status and `WWW-Authenticate`."""
        body = rpc(tool, arguments)
        headers = {
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": _PROTOCOL,
            "mcp-method": "tools/call",
            "mcp-name": tool,
        }
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return await self.mcp_http.post("/mcp", json=body, headers=headers)

    def payment(self, amount: str, key: str, user: str = "alice") -> dict[str, Any]:
        return {
            "from_account_id": self.account(user),
            "payee_id": self.payee(user),
            "amount": amount,
            "idempotency_key": key,
        }


@asynccontextmanager
async def running_stack(
    state: Path,
    *,
    redis_url: str | None = None,
    keys_store: Literal["file", "redis"] = "file",
    mcp_redis: bool | None = None,
    clock: FakeClock | None = None,
    issuer_link_down: bool = False,
    jwks_retry_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[Stack]:
    """Start the issuer, then the MCP server whose JWKS cache fetches from it through an `IssuerLink`.

    `mcp_redis` (default: whether `redis_url` is set) gives the MCP server `REDIS_URL` too.
    `issuer_link_down` starts the MCP server while the issuer does not answer it yet (it arrives late);
    `jwks_retry_sleep` is the MCP server's wait between JWKS retries.
    """
    clock = clock or FakeClock()
    client_keys = {name: generate_key("ES256") for name in ("orchestrator", "backend", "admin")}
    (state / "issuer").mkdir()
    clients_file = write_client_registry(state / "clients.json", client_keys)
    settings = issuer_settings(state / "issuer", clients_file, keys_store=keys_store, redis_url=redis_url)
    issuer_app = create_issuer(settings, clock=clock, rotation_sleep=never, tracer_provider=tracer_provider)
    engine = make_engine(f"sqlite:///{state / 'bank.db'}")
    create_schema(engine)
    seed(engine, clock=clock)
    use_redis = redis_url is not None if mcp_redis is None else mcp_redis
    mcp_settings = McpSettings(
        mcp_issuer_url=ISSUER,
        mcp_resource_url=RESOURCE,
        voicebank_state=state,
        redis_url=redis_url if use_redis else None,
    )
    link = IssuerLink(issuer_app)
    link.down = issuer_link_down
    async with AsyncExitStack() as exits:
        exits.callback(engine.dispose)
        await exits.enter_async_context(running(issuer_app))
        mcp_link = await exits.enter_async_context(httpx.AsyncClient(transport=link, base_url=ISSUER))
        mcp_app = build_app_from_settings(
            mcp_settings,
            clock=clock,
            http_client=mcp_link,
            engine=engine,
            jwks_retry_sleep=jwks_retry_sleep,
            tracer_provider=tracer_provider,
        )
        await exits.enter_async_context(running(mcp_app))
        issuer_http = await exits.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=issuer_app), base_url=ISSUER)
        )
        mcp_http = await exits.enter_async_context(
            httpx2.AsyncClient(transport=httpx2.ASGITransport(app=mcp_app), base_url=BASE)
        )
        stack = Stack(clock, client_keys, issuer_app, mcp_app, link, issuer_http, mcp_http, engine, exits)
        try:
            yield stack
        finally:
            for bank in stack.banks:
                await bank.aclose()
