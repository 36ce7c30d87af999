"""docs/operations.md runs as written: each section's `bash` blocks, against a real `voicebank up`.

The system is the one the runbook is for: issuer and MCP server from `voicebank up`, with Redis holding the
key ring (`KEYS_STORE=redis`), the refresh-token families, the replay caches and the key events. The ring was
made an hour ago, so its next key may become active without waiting. Each test sets up the incident its
section is about (live calls, a token signed by the key that leaks, an emptied Redis), runs the section's
`bash` blocks with `bash -euo pipefail`, and checks that the system is in the state the section promises.
What the page asks the operator to do between two blocks (wait, restart the issuers) the test does there.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from issuer import IssuerSettings, key_store
from keys import KeyPair, assertion_form, load_client_key, unverified_header
from orchestrator._commands._dev_init import dev_init
from orchestrator._tokens._errors import GrantRevoked, IssuerRefused
from orchestrator._tokens._issuer_client import IssuerClient
from orchestrator._tokens._retry import RetryPolicy
from tests.support.servers import RedisServer
from tests.support.up import ROOT, UpProcess, clean_env, free_port, tool_call

RUNBOOK = ROOT / "docs" / "operations.md"
HOUR_AGO = time.time() - 3600
BLOCK = re.compile(r"^```bash\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def runbook() -> dict[str, list[str]]:
    """Each `## ` section's `bash` blocks, in order."""
    sections: dict[str, list[str]] = {}
    for part in re.split(r"^## ", RUNBOOK.read_text(encoding="utf-8"), flags=re.MULTILINE)[1:]:
        title, _, body = part.partition("\n")
        sections[title.strip()] = BLOCK.findall(body)
    return sections


SECTIONS = runbook()


@dataclass
class System:
    state: Path
    issuer: str
    resource: str
    redis_url: str
    up: UpProcess
    settings: dict[str, str]
    """What `voicebank up` and the operator's commands are configured with."""

    def env(self, **inputs: str) -> dict[str, str]:
        """The operator's environment: the admin key's directory, the issuer, and what they know."""
        return clean_env(
            PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin",
            MCP_RESOURCE_URL=self.resource,
            MCP_URL=self.resource,
            **self.settings,
            **inputs,
        )

    def restart(self, **settings: str) -> None:
        """Stop `voicebank up` and start it again on the same ports with these settings changed."""
        assert self.up.stop() == 0
        self.settings |= settings
        self.up = _up(self.issuer, self.resource, self.settings).start()

    def run(self, section: str, block: int | None = None, **inputs: str) -> str:
        """Run the section's blocks (or its `block`-th only) as written; their output."""
        blocks = SECTIONS[section]
        assert blocks, f"no bash block in section {section!r}"
        script = "".join(blocks) if block is None else blocks[block]
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env=self.env(**inputs),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"{section}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def keys(self) -> dict[str, str]:
        """kid -> state, as `voicebank keys list` shows the ring."""
        return {kid: state for kid, (_, state) in self.ring().items()}

    def ring(self) -> dict[str, tuple[str, str]]:
        """kid -> (alg, state), as `voicebank keys list` shows the ring."""
        listed = self.run_command("voicebank keys list")
        return {line.split()[0]: (line.split()[1], line.split()[2]) for line in listed.splitlines()[1:]}

    def publish_earlier(self, kid: str, when: float) -> None:
        """Time passes for one key: the stored ring says it was made at `when` (its replicas reload it)."""
        client = redis.Redis.from_url(self.redis_url)
        doc = json.loads(client.get("voicebank:keys:ring") or b"{}")
        (record,) = [record for record in doc["keys"] if record["kid"] == kid]
        record["created_at"] = when
        with client.pipeline(transaction=True) as pipe:
            pipe.set("voicebank:keys:ring", json.dumps(doc))
            pipe.incr("voicebank:keys:version")
            pipe.execute()
        client.close()

    def run_command(self, command: str) -> str:
        done = subprocess.run(
            ["bash", "-c", command], env=self.env(), capture_output=True, text=True, timeout=120, check=True
        )
        return done.stdout

    def jwks_kids(self) -> set[str]:
        return {key["kid"] for key in httpx.get(f"{self.issuer}/.well-known/jwks.json").json()["keys"]}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    # A Redis of its own: the runbook wipes it, and no other test's fixture may empty it under the system.
    server = RedisServer(tmp_path_factory.mktemp("runbook-redis"))
    server.start()
    try:
        yield from _serving(tmp_path_factory.mktemp("runbook") / "state", server.url)
    finally:
        server.stop()


def _serving(state: Path, redis_url: str) -> Iterator[System]:
    issuer_settings = IssuerSettings(voicebank_state=state, keys_store="redis", redis_url=redis_url)
    dev_init(issuer_settings, out=lambda _: None)

    async def old_ring() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await key_store(issuer_settings, client, lambda: HOUR_AGO).load(HOUR_AGO)
        await client.aclose()

    asyncio.run(old_ring())
    issuer, resource = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}/mcp"
    settings = {
        "VOICEBANK_STATE": str(state),
        "KEYS_STORE": "redis",
        "REDIS_URL": redis_url,
        "ISSUER_URL": issuer,
    }
    running = System(state, issuer, resource, redis_url, _up(issuer, resource, settings).start(), settings)
    try:
        yield running
    finally:
        assert running.up.stop() == 0


def _up(issuer: str, resource: str, settings: dict[str, str]) -> UpProcess:
    ports = ("--issuer-port", str(httpx.URL(issuer).port), "--mcp-port", str(httpx.URL(resource).port))
    return UpProcess(*ports, servers=2, env=clean_env(**settings))


@dataclass
class Call:
    """A call in progress: its session id and the agent's refresh token."""

    sid: str
    user: str
    refresh_token: str
    agent: IssuerClient


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def start_call(http: httpx.AsyncClient, system: System, user: str = "alice") -> Call:
    """What the app backend and the agent do when a call starts: a session, its grant exchanged."""
    backend = load_client_key(system.state, "backend")
    form = {"grant_type": "client_credentials", "scope": "sessions:create"}
    form |= assertion_form("backend", backend, f"{system.issuer}/token", time.time())
    bearer = (await http.post(f"{system.issuer}/token", data=form)).json()["access_token"]
    created = await http.post(
        f"{system.issuer}/sessions",
        json={"user_id": user, "scope": "read configure"},
        headers={"Authorization": f"Bearer {bearer}"},
    )
    session = created.json()
    agent = IssuerClient(
        http,
        issuer=system.issuer,
        client_id="orchestrator",
        key=load_client_key(system.state, "orchestrator"),
        retry=RetryPolicy(attempts=1),
    )
    exchanged = await agent.exchange(session["session_grant"], "read")
    assert exchanged.refresh_token is not None
    return Call(session["session_id"], user, exchanged.refresh_token, agent)


async def still_served(call: Call) -> bool:
    """Whether the agent can still get a token for this call (and keeps the rotated refresh token)."""
    try:
        refreshed = await call.agent.refresh(call.refresh_token, "read")
    except GrantRevoked:
        return False
    assert refreshed.refresh_token is not None
    call.refresh_token = refreshed.refresh_token
    return True


async def read_token(call: Call) -> str:
    refreshed = await call.agent.refresh(call.refresh_token, "read")
    assert refreshed.refresh_token is not None
    call.refresh_token = refreshed.refresh_token
    return refreshed.access_token


async def balances_status(http: httpx.AsyncClient, system: System, token: str) -> int:
    """The HTTP status of a `get_balance` call with this token."""
    response = await http.post(system.resource, **tool_call(token, "get_balance", {}))
    return response.status_code


def test_every_section_has_commands() -> None:
    assert list(SECTIONS) == [
        "Check the configuration first",
        "Planned rotation",
        "Emergency rotation",
        "Revoking a key",
        "Changing the signing algorithm",
        "Revoking a call, a user, a client",
        "Disabling a client: rolling out the clients file",
        "A stolen issuer key",
        "A stolen client key",
        "A compromised MCP replica",
        "A wiped Redis",
    ]
    assert all(SECTIONS.values())


def test_check_the_configuration_first(system: System) -> None:
    out = system.run("Check the configuration first")
    assert "FAIL" not in out
    assert "ok   issuer keys: " in out
    assert f"ok   redis: REDIS_URL {system.redis_url} answers" in out


def test_planned_rotation(system: System) -> None:
    before = system.keys()
    (active,) = [kid for kid, state in before.items() if state == "active"]
    (upcoming,) = [kid for kid, state in before.items() if state == "next"]
    system.run("Planned rotation")
    after = system.keys()
    assert (after[active], after[upcoming]) == ("retiring", "active")
    assert active in system.jwks_kids()  # its tokens still verify until they expire


async def test_emergency_rotation(system: System, http: httpx.AsyncClient) -> None:
    call = await start_call(http, system)
    (active,) = [kid for kid, state in system.keys().items() if state == "active"]
    mark = system.up.mark()
    system.run("Emergency rotation")
    assert system.keys()[active] == "retiring"
    system.up.wait_for("key events: fetched the JWKS for rotated kid", mark)
    token = await read_token(call)
    assert unverified_header(token)["kid"] != active  # signed by the new key at once
    assert await balances_status(http, system, token) == 200  # and the MCP server already knows it


async def test_revoking_a_key_refuses_its_tokens_at_once(system: System, http: httpx.AsyncClient) -> None:
    call = await start_call(http, system)
    signed = await read_token(call)
    kid = str(unverified_header(signed)["kid"])
    assert await balances_status(http, system, signed) == 200
    mark = system.up.mark()
    system.run("Revoking a key", KID=kid)
    assert kid not in system.jwks_kids()
    system.up.wait_for(f"key events: dropped revoked kid {kid}", mark)
    assert system.keys().get(kid, "revoked") == "revoked"
    assert await balances_status(http, system, signed) == 401  # every MCP replica dropped it (key event)
    assert await balances_status(http, system, await read_token(call)) == 200  # signing goes on


async def test_changing_the_signing_algorithm(system: System, http: httpx.AsyncClient) -> None:
    section = "Changing the signing algorithm"
    call = await start_call(http, system)
    before = await read_token(call)
    assert unverified_header(before)["alg"] == "ES256"
    system.run(section, block=0)
    (prepared,) = [kid for kid, (alg, _) in system.ring().items() if alg == "RS256"]
    assert system.keys()[prepared] == "next"
    assert prepared in system.jwks_kids()  # published: every verifier caches it
    assert unverified_header(await read_token(call))["alg"] == "ES256"  # but not signing yet
    # Twice JWKS_MAX_AGE later, the issuers restart with the new algorithm; the call goes on.
    system.publish_earlier(prepared, HOUR_AGO)
    system.restart(ISSUER_SIGNING_ALG="RS256")
    after = await read_token(call)
    assert unverified_header(after)["kid"] == prepared
    assert [await balances_status(http, system, token) for token in (before, after)] == [200, 200]
    system.run(section, block=1)
    ring = system.ring()
    live = {"active", "next", "retiring"}
    assert {state for alg, state in ring.values() if alg == "ES256" and state in live} == {"retiring"}
    assert ring[prepared] == ("RS256", "active")
    assert await balances_status(http, system, before) == 200  # retiring: its tokens verify until they expire
    assert unverified_header(await read_token(call))["alg"] == "RS256"


async def test_revoking_a_call_a_user_a_client(system: System, http: httpx.AsyncClient) -> None:
    alice = await start_call(http, system, "alice")
    bob = await start_call(http, system, "bob")
    carol = await start_call(http, system, "carol")
    out = system.run(
        "Revoking a call, a user, a client", SID=alice.sid, USER_ID="bob", CLIENT_ID="orchestrator"
    )
    lines = out.splitlines()
    assert lines[0] == f"revoked 1 refresh-token family of sid {alice.sid}"
    assert lines[1] == "revoked 1 refresh-token family of sub bob"
    assert re.fullmatch(r"revoked \d+ refresh-token famil(y|ies) of client_id orchestrator", lines[2])
    assert [await still_served(call) for call in (alice, bob, carol)] == [False, False, False]


async def test_disabling_a_client(system: System, http: httpx.AsyncClient) -> None:
    section = "Disabling a client: rolling out the clients file"
    call = await start_call(http, system)
    inputs = {"CLIENT_ID": "orchestrator", "ISSUER_PID": str(system.up.pid)}
    mark = system.up.mark()
    system.run(section, block=0, **inputs)
    system.up.wait_for("client registry reloaded", mark)
    with pytest.raises(IssuerRefused) as refused:
        await call.agent.refresh(call.refresh_token, "read")
    assert refused.value.error == "invalid_client"  # its refresh tokens included
    assert (system.state / "clients.json").stat().st_mode & 0o777 == 0o600
    mark = system.up.mark()
    system.run(section, block=1, **inputs)
    system.up.wait_for("client registry reloaded", mark)
    assert await still_served(call)  # let in again: disabling revoked nothing


async def test_a_stolen_issuer_key(system: System, http: httpx.AsyncClient) -> None:
    call = await start_call(http, system)
    forged_with = await read_token(call)  # stands for a token the thief signs with the stolen key
    kid = str(unverified_header(forged_with)["kid"])
    mark = system.up.mark()
    system.run("A stolen issuer key", KID=kid)
    assert kid not in system.jwks_kids()
    system.up.wait_for(f"key events: dropped revoked kid {kid}", mark)
    assert await balances_status(http, system, forged_with) == 401
    assert not await still_served(call)
    fresh = await start_call(http, system)
    assert await balances_status(http, system, await read_token(fresh)) == 200


async def test_a_stolen_client_key(system: System, http: httpx.AsyncClient) -> None:
    call = await start_call(http, system)
    stolen: KeyPair = load_client_key(system.state, "orchestrator")
    mark = system.up.mark()
    system.run("A stolen client key", CLIENT_ID="orchestrator", ISSUER_PID=str(system.up.pid))
    system.up.wait_for("client registry reloaded", mark)
    renewed = load_client_key(system.state, "orchestrator")
    assert renewed.kid != stolen.kid
    thief = IssuerClient(
        http, issuer=system.issuer, client_id="orchestrator", key=stolen, retry=RetryPolicy(1)
    )
    with pytest.raises(IssuerRefused) as refused:
        await thief.refresh(call.refresh_token, "read")
    assert refused.value.error == "invalid_client"  # the old key is refused from the reload on
    call.agent = IssuerClient(
        http, issuer=system.issuer, client_id="orchestrator", key=renewed, retry=RetryPolicy(1)
    )
    assert not await still_served(call)  # and what the client held before is revoked, even with the new key
    fresh = await start_call(http, system)  # the agent with its new key
    assert await balances_status(http, system, await read_token(fresh)) == 200


async def test_a_compromised_mcp_replica(system: System, http: httpx.AsyncClient) -> None:
    calls = [await start_call(http, system, user) for user in ("alice", "bob")]
    out = system.run("A compromised MCP replica")
    assert out.splitlines()[0].startswith("revoked ")
    assert "FAIL" not in out
    assert [await still_served(call) for call in calls] == [False, False]


async def test_a_wiped_redis(system: System, http: httpx.AsyncClient) -> None:
    call = await start_call(http, system)
    before_wipe = await read_token(call)
    old = set(system.keys())
    redis.Redis.from_url(system.redis_url).flushall()  # the incident: Redis came back empty
    out = system.run("A wiped Redis")
    assert "FAIL" not in out
    assert not set(system.keys()) & old  # a new ring
    assert not await still_served(call)
    fresh = await start_call(http, system)
    # The MCP server learns the new ring from the first token it does not know, and forgets the old one.
    assert await balances_status(http, system, await read_token(fresh)) == 200
    assert await balances_status(http, system, before_wipe) == 401
