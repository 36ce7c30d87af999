"""`voicebank demo`: a scripted banking call through the real orchestrator code against real processes."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from livekit.agents import AgentSession
from rich.console import Console

from issuer import IssuerSettings
from keys import (
    KeyPair,
    MalformedToken,
    assertion_form,
    dpop_proof,
    generate_key,
    load_client_key,
    sign,
    unverified_header,
)
from orchestrator._agent._banking_agent import BankingAgent, CallState
from orchestrator._bank._protocol import AuthorizationLost, BankError
from orchestrator._call._identity import parse_identity
from orchestrator._call._session_store import (
    MemorySessionStore,
    RedisSessionStore,
    SessionRecord,
    SessionStore,
    grant_digest,
)
from orchestrator._call._wiring import CallBank
from orchestrator._commands._demo._call import (
    play_turn,
    script_confirmation,
    script_payment,
    speak_balances,
    speak_transactions,
)
from orchestrator._commands._demo._payments import BankingApp, PaymentsDemo
from orchestrator._commands._demo._scripted_llm import ScriptedLLM, call
from orchestrator._commands._demo._stack import StackError, free_port, running_stack
from orchestrator._commands._demo._timeline import Timeline
from orchestrator._commands._dev_init import DevInitError, dev_init
from orchestrator._logs import logging_configured
from orchestrator._tokens._dpop import CallKey
from orchestrator._tokens._issuer_client import BackchannelRequest, IssuerClient, TokenResponse
from orchestrator._tokens._manager import TokenManager

__all__ = ["DemoOptions", "run_demo"]

USER = "alice"
SCOPES = "read transact configure"
MCP_HEADERS = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28"}


@dataclass(frozen=True)
class DemoOptions:
    """Where the demo keeps its state, which Redis (if any), and how short its tokens live."""

    state: Path | None = None
    redis_url: str | None = None
    issuer_port: int = 8000
    mcp_port: int = 8001
    token_lifetime: int = 8


def kid_of(token: str) -> str:
    try:
        return str(unverified_header(token).get("kid", "?"))
    except MalformedToken:
        return "?"


class ObservedIssuerClient(IssuerClient):
    """The real issuer client, reporting each answer to the timeline: key ids and lifetimes, never tokens."""

    def __init__(self, *args: Any, timeline: Timeline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeline = timeline
        self.last: dict[str, TokenResponse] = {}
        self.issued_at: dict[str, float] = {}
        self.refresh_token: str | None = None
        self.read_refreshes = 0
        self.polls = 0
        self.transact_arguments: dict[str, str] = {}

    def _record(self, response: TokenResponse, scope: str) -> None:
        self.last[scope] = response
        self.issued_at[scope] = time.monotonic()
        if response.refresh_token is not None:
            self.refresh_token = response.refresh_token

    async def exchange(self, session_grant: str, scope: str = "read") -> TokenResponse:
        response = await super().exchange(session_grant, scope)
        self._record(response, scope)
        self.timeline.step(
            "Grant exchanged (RFC 8693, private_key_jwt, DPoP proof)",
            f"{response.token_type} token, kid {kid_of(response.access_token)[:12]}…, "
            f"scope {response.scope!r}, expires in {response.expires_in:.0f} s; "
            "refresh token bound to the session and the call's key",
        )
        return response

    async def refresh(
        self, refresh_token: str, scope: str, authorization_details: str | None = None
    ) -> TokenResponse:
        response = await super().refresh(refresh_token, scope, authorization_details)
        self._record(response, scope)
        if authorization_details is not None:
            entry = dict(json.loads(authorization_details)[0])
            self.transact_arguments = {k: v for k, v in entry.items() if k not in ("type", "currency")}
        kid = kid_of(response.access_token)[:12]
        if scope == "transact":
            detail = f"single-use, kid {kid}…, expires in {response.expires_in:.0f} s; refresh token rotated"
            self.timeline.step("Fresh transact token bound to exactly the confirmed payment", detail)
        else:
            if scope == "read":
                self.read_refreshes += 1
            detail = (
                f"scope {scope!r}, kid {kid}…, expires in {response.expires_in:.0f} s; refresh token rotated"
            )
            self.timeline.step(f"Refresh-token grant for {scope!r}", detail)
        return response

    async def backchannel_authorize(
        self, session_id: str, authorization_details: str, binding_message: str
    ) -> BackchannelRequest:
        request = await super().backchannel_authorize(session_id, authorization_details, binding_message)
        self.polls = 0
        self.timeline.step(
            "Approval requested in the caller's app (CIBA /bc-authorize)",
            f"“{binding_message}”, lives {request.expires_in:.0f} s, polled every {request.interval:.0f} s",
        )
        return request

    async def poll(self, auth_req_id: str) -> TokenResponse:
        self.polls += 1
        try:
            response = await super().poll(auth_req_id)
        except BankError as exc:
            if exc.code != "authorization_pending":
                self.timeline.step(f"Approval poll {self.polls}: {exc.code}")
            raise
        self._record(response, "transact")
        self.timeline.step(
            f"Approval poll {self.polls}: approved",
            f"a single-use token bound to the approved payment, kid {kid_of(response.access_token)[:12]}…",
        )
        return response


async def client_token(
    http: httpx.AsyncClient, issuer_url: str, state: Path, client_id: str, scope: str
) -> str:
    """A bearer for the issuer's own endpoints (client credentials, private_key_jwt)."""
    key = load_client_key(state, client_id)
    form = {"grant_type": "client_credentials", "scope": scope}
    form |= assertion_form(client_id, key, f"{issuer_url}/token", time.time())
    response = await http.post(f"{issuer_url}/token", data=form)
    response.raise_for_status()
    return str(response.json()["access_token"])


async def mcp_status(
    http: httpx.AsyncClient,
    resource_url: str,
    token: str,
    tool: str,
    *,
    proof_key: KeyPair | CallKey | None = None,
    arguments: dict[str, str] | None = None,
) -> httpx.Response:
    """A raw `tools/call`, as Bearer or (with a key to sign a proof) as DPoP, to show the server's answer."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments or {}},
    }
    headers = {
        **MCP_HEADERS,
        "mcp-method": "tools/call",
        "mcp-name": tool,
        "authorization": f"Bearer {token}",
    }
    if isinstance(proof_key, CallKey):
        headers |= {
            "authorization": f"DPoP {token}",
            "dpop": proof_key.proof("POST", resource_url, access_token=token),
        }
    elif proof_key is not None:
        proof = dpop_proof(proof_key, htm="POST", htu=resource_url, now=time.time(), access_token=token)
        headers |= {"authorization": f"DPoP {token}", "dpop": proof}
    return await http.post(resource_url, json=body, headers=headers)


def forged_token(active_kid: str, issuer_url: str, resource_url: str) -> str:
    """An access token that claims the issuer's active kid but is signed by a key the attacker made."""
    now = int(time.time())
    claims = {
        "iss": issuer_url,
        "sub": USER,
        "aud": resource_url,
        "exp": now + 60,
        "iat": now,
        "nbf": now,
        "jti": "forged",
        "client_id": "orchestrator",
        "scope": "read transact",
    }
    attacker = generate_key("ES256")
    return sign(claims, KeyPair(attacker.private_key, attacker.alg, active_kid), typ="at+jwt")


class Demo:
    """One run of the scripted call; each step checks that the system behaved as the timeline says."""

    def __init__(self, options: DemoOptions, state: Path, timeline: Timeline) -> None:
        self.options = options
        self.state = state
        self.timeline = timeline
        self.issuer_url = ""
        self.active_kid = "?"
        self.call_key: CallKey | None = None

    async def run(self, issuer_url: str, resource_url: str) -> None:
        self.issuer_url = issuer_url
        t = self.timeline
        async with httpx.AsyncClient(timeout=10.0) as http:
            t.section("1. The user's app backend opens a voice session")
            backend = await client_token(http, issuer_url, self.state, "backend", "sessions:create")
            created = await http.post(
                f"{issuer_url}/sessions",
                json={"user_id": USER, "scope": SCOPES},
                headers={"Authorization": f"Bearer {backend}"},
            )
            if not t.check(created.status_code == 201, "Session created", f"HTTP {created.status_code}"):
                return
            session = created.json()
            t.step(
                "Session grant issued",
                f"sid {session['session_id']}, typ session-grant+jwt, expires in {session['expires_in']} s, "
                f"may_act orchestrator",
            )
            # What LiveKit would carry in the participant's metadata.
            metadata = json.dumps(
                {
                    "user_id": USER,
                    "session_id": session["session_id"],
                    "session_grant": session["session_grant"],
                }
            )
            await self.call(http, issuer_url, resource_url, metadata)

    async def call(self, http: httpx.AsyncClient, issuer_url: str, resource_url: str, metadata: str) -> None:
        t = self.timeline
        t.section("2. The agent joins and identifies the caller")
        identity = parse_identity(metadata, room_name=json.loads(metadata)["session_id"])
        t.step("Caller identified from participant metadata", f"user {identity.user_id}")
        store, redis_client = self._session_store()
        await store.open(
            SessionRecord(
                session_id=identity.session_id,
                user_id=identity.user_id,
                started_at=time.time(),
                grant_sha256=grant_digest(identity.session_grant),
            )
        )
        t.step("Session recorded", f"{type(store).__name__} (no token stored)")

        key = load_client_key(self.state, "orchestrator")
        self.call_key = CallKey()  # as the worker does for every call: in memory, never stored
        t.step("A fresh DPoP key for this call, in memory only", f"jkt {self.call_key.jkt[:12]}…")
        issuer_http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
        client = ObservedIssuerClient(
            issuer_http, issuer=issuer_url, client_id="orchestrator", key=key, timeline=t, dpop=self.call_key
        )
        tokens = TokenManager(client, session_id=identity.session_id)
        await tokens.start(identity.session_grant)
        bank = CallBank(tokens, resource_url, issuer_http, self.call_key)
        scripted = ScriptedLLM()
        call_state = CallState(identity=identity)
        try:
            async with AgentSession[CallState](llm=scripted, userdata=call_state) as session:
                await session.start(BankingAgent(bank))
                await self.conversation(session, scripted, client, http, issuer_url, resource_url)
                await PaymentsDemo(
                    t,
                    session,
                    scripted,
                    call_state,
                    tokens,
                    http,
                    issuer_url,
                    resource_url,
                    BankingApp(http, issuer_url, self.state),
                    self.call_key,
                ).run()
                await self.attacks(http, issuer_url, resource_url, client)
        finally:
            t.section("7. The call ends")
            await call_state.approvals.cancel()
            revoked = await bank.end()
            t.check(revoked, "Refresh-token family revoked (RFC 7009)")
            await store.close(identity.session_id)
            if redis_client is not None:
                await redis_client.aclose()
            t.step("Session record closed")
        await self.after_the_call(client)

    def _session_store(self) -> tuple[SessionStore, Any]:
        if self.options.redis_url:
            from redis.asyncio import Redis

            client = Redis.from_url(self.options.redis_url)
            return RedisSessionStore(client), client
        return MemorySessionStore(), None

    async def conversation(
        self,
        session: AgentSession[CallState],
        scripted: ScriptedLLM,
        client: ObservedIssuerClient,
        http: httpx.AsyncClient,
        issuer_url: str,
        resource_url: str,
    ) -> None:
        t = self.timeline
        t.section("3. Reading balances and paying a bill")
        scripted.script([call("get_balance", "bal-1")], speak_balances)
        balance = await play_turn(session, t, "What's my balance?")
        text = json.dumps([getattr(e.item, "output", "") for e in balance.events])
        t.check(
            "100200301234" not in text and "****1234" in text,
            "PII masked before the LLM",
            "account numbers to ****1234",
        )

        script_payment(scripted, "City Power", "25.00", "checking")
        await play_turn(session, t, "Please pay City Power and Light twenty-five dollars from checking.")
        script_confirmation(scripted)
        paid = await play_turn(session, t, "Yes, go ahead.")
        outputs = [e.item for e in paid.events if hasattr(e.item, "output")]
        completed = any('"completed"' in getattr(o, "output", "") for o in outputs)
        t.check(completed, "Payment completed under a single-use transact token")
        transact = client.last.get("transact")
        if transact is not None:
            # The very payment it was bound to, sent again with a fresh proof by the call's own key: only
            # the spent jti stands in the way.
            replay = await mcp_status(
                http,
                resource_url,
                transact.access_token,
                "make_payment",
                proof_key=self.call_key,
                arguments=client.transact_arguments,
            )
            t.check(
                replay.status_code == 401,
                "The spent transact token is refused on reuse",
                f"HTTP {replay.status_code} {replay.headers.get('www-authenticate', '')}",
            )

        t.section("4. A key rotation in the middle of the call")
        admin = await client_token(http, issuer_url, self.state, "admin", "keys:admin")
        before = client.last["read"].access_token
        rotated = await http.post(
            f"{issuer_url}/admin/keys/rotate",
            json={"force": True},
            headers={"Authorization": f"Bearer {admin}"},
        )
        ring = rotated.json().get("keys", []) if rotated.status_code == 200 else []
        active = next((k["kid"] for k in ring if k.get("state") == "active"), "?")
        t.check(
            rotated.status_code == 200 and active != kid_of(before),
            "Issuer keys rotated through the admin API",
            f"active {kid_of(before)[:12]}… → {active[:12]}… (the old key is now retiring, still published)",
        )
        scripted.script([call("get_balance", "bal-2", account_type="savings")], speak_balances)
        await play_turn(session, t, "And how much is in my savings?")
        t.check(
            client.last["read"].access_token == before,
            "The cached read token, signed by the retiring key, still verifies",
            f"kid {kid_of(before)[:12]}…",
        )
        await self.proactive_refresh(session, scripted, client, active)
        self.active_kid = active

    async def attacks(
        self, http: httpx.AsyncClient, issuer_url: str, resource_url: str, client: ObservedIssuerClient
    ) -> None:
        t = self.timeline
        active = self.active_kid
        t.section("6. What an attacker gets")
        forged = await mcp_status(
            http, resource_url, forged_token(active, issuer_url, resource_url), "get_balance"
        )
        t.check(
            forged.status_code == 401
            and 'error="invalid_token"' in forged.headers.get("www-authenticate", ""),
            "A forged token (right kid, attacker's key) is refused",
            f"HTTP {forged.status_code} WWW-Authenticate: {forged.headers.get('www-authenticate', '')}",
        )
        read_token = client.last["read"].access_token
        lifted = await mcp_status(http, resource_url, read_token, "get_balance")
        t.check(
            lifted.status_code == 401,
            "A read token lifted from the call, replayed as Bearer, is refused",
            f"HTTP {lifted.status_code} WWW-Authenticate: {lifted.headers.get('www-authenticate', '')}",
        )
        thief = await mcp_status(
            http, resource_url, read_token, "get_balance", proof_key=generate_key("ES256")
        )
        t.check(
            thief.status_code == 401
            and 'error="invalid_dpop_proof"' in thief.headers.get("www-authenticate", ""),
            "...and with a DPoP proof by the thief's own key (cnf.jkt names the call's key)",
            f"HTTP {thief.status_code} WWW-Authenticate: {thief.headers.get('www-authenticate', '')}",
        )
        no_scope = await mcp_status(http, resource_url, read_token, "make_payment", proof_key=self.call_key)
        t.check(
            no_scope.status_code == 403
            and "insufficient_scope" in no_scope.headers.get("www-authenticate", ""),
            "A read token cannot pay",
            f"HTTP {no_scope.status_code} WWW-Authenticate: {no_scope.headers.get('www-authenticate', '')}",
        )

    async def proactive_refresh(
        self,
        session: AgentSession[CallState],
        scripted: ScriptedLLM,
        client: ObservedIssuerClient,
        active: str,
    ) -> None:
        t = self.timeline
        lifetime = client.last["read"].expires_in
        wait = client.issued_at["read"] + 0.8 * lifetime - time.monotonic() + 0.2
        if wait > 0:
            t.step(
                "Waiting for the read token to reach 80 % of its lifetime",
                f"{wait:.1f} s (demo tokens live {lifetime:.0f} s; production 300 s)",
            )
            await asyncio.sleep(wait)
        refreshes = client.read_refreshes
        scripted.script([call("list_transactions", "txn-1", limit=3)], speak_transactions)
        await play_turn(session, t, "What were my last few transactions?")
        new_kid = kid_of(client.last["read"].access_token)
        t.check(
            client.read_refreshes == refreshes + 1 and new_kid == active,
            "Read token refreshed ahead of expiry, now signed by the new key, and verified",
            f"kid {new_kid[:12]}…",
        )

    async def after_the_call(self, client: ObservedIssuerClient) -> None:
        t = self.timeline
        if client.refresh_token is None:
            t.step("No refresh token to test", ok=False)
            return
        async with httpx.AsyncClient(timeout=10.0) as http:
            fresh = IssuerClient(
                http,
                issuer=self.issuer_url,
                client_id="orchestrator",
                key=load_client_key(self.state, "orchestrator"),
                dpop=self.call_key,  # even with the call's key: the family is revoked
            )
            try:
                await fresh.refresh(client.refresh_token, "read")
            except AuthorizationLost:
                t.step("The last refresh token is refused after the call", "invalid_grant: family revoked")
            else:
                t.step("The last refresh token still worked after the call", ok=False)


def _prepare_state(options: DemoOptions, console: Console) -> tuple[Path, bool]:
    """The state directory (a fresh temporary one unless given) and whether to delete it afterwards."""
    if options.state is not None:
        state, temporary = options.state, False
    else:
        state, temporary = Path(tempfile.mkdtemp(prefix="voicebank-demo-")), True
    settings = IssuerSettings(voicebank_state=state)
    lines: list[str] = []
    try:
        dev_init(settings, out=lines.append)
    except BaseException:
        if temporary:
            shutil.rmtree(state, ignore_errors=True)
        raise
    console.print(f"[dim]state directory {state} ({len(lines)} items: keys, clients, bank database)[/dim]")
    return state, temporary


async def _run(options: DemoOptions, state: Path, timeline: Timeline) -> None:
    issuer_port = free_port(options.issuer_port)
    mcp_port = free_port(options.mcp_port if options.mcp_port != issuer_port else 0)
    env = {"ACCESS_TOKEN_LIFETIME": str(options.token_lifetime), "VOICEBANK_MODE": "dev"}
    if options.redis_url:
        env |= {"REDIS_URL": options.redis_url, "KEYS_STORE": "redis"}
    timeline.section("0. Starting the issuer and the MCP server")
    async with running_stack(state, issuer_port=issuer_port, mcp_port=mcp_port, extra_env=env) as urls:
        timeline.step("Issuer and MCP server listening", f"{urls[0]}  {urls[1]}")
        await Demo(options, state, timeline).run(*urls)
    timeline.step("Processes stopped")


def run_demo(options: DemoOptions, console: Console | None = None) -> int:
    """Run the demo; 0 when every step behaved as shown."""
    console = console or Console(highlight=False)
    console.print("[bold]voicebank demo[/bold]: a scripted banking call through the real orchestrator code")
    try:
        state, temporary = _prepare_state(options, console)
    except DevInitError as exc:
        console.print(f"[red]voicebank demo: {exc}[/red]")
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]voicebank demo: interrupted[/yellow]")
        return 130
    timeline = Timeline(console)
    failed = True
    try:
        # The services' and the agent's own log lines go to a file, so the timeline stays readable.
        with logging_configured(logging.INFO, log_file=state / "demo.log"):
            asyncio.run(_run(options, state, timeline))
        failed = bool(timeline.failures)
    except StackError as exc:
        console.print(f"[red]voicebank demo: {exc}[/red]")
    except KeyboardInterrupt:
        console.print("[yellow]voicebank demo: interrupted; processes stopped[/yellow]")
        failed = False  # nothing to diagnose: the temporary state goes
        return 130
    finally:
        if temporary and not failed:
            shutil.rmtree(state, ignore_errors=True)
    if failed:
        console.print(f"[bold red]demo failed[/bold red]: {', '.join(timeline.failures) or 'see above'}")
        console.print(f"[dim]logs kept in {state}[/dim]")
        return 1
    console.print("\n[bold green]demo finished: every step behaved as shown[/bold green]")
    return 0
