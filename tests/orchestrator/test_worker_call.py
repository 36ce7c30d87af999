"""A call's opening and end: identity, session record in real Redis, the bank factory and the on_end hook."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from livekit.agents import AgentSession
from redis.asyncio import Redis

from orchestrator import AuthorizationLost, Bank, CallerIdentity, CallState, RedisSessionStore, VoiceCall
from orchestrator._agent._speech import AUTHORIZATION_LOST, CANNOT_VERIFY
from orchestrator._call._session_store import grant_digest
from tests.support.agent import MemoryBank, ScriptedLLM, call

GRANT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
METADATA = json.dumps({"user_id": "alice", "session_id": "room-1", "session_grant": GRANT})


class Wiring:
    """A bank factory and an on_end hook that remember how they were called."""

    def __init__(self, fail: AuthorizationLost | None = None) -> None:
        self.bank = MemoryBank()
        self.fail = fail
        self.built: list[CallerIdentity] = []
        self.ended: list[tuple[CallerIdentity, Bank]] = []

    async def bank_factory(self, identity: CallerIdentity) -> Bank:
        self.built.append(identity)
        if self.fail is not None:
            raise self.fail
        return self.bank

    async def on_end(self, identity: CallerIdentity, bank: Bank) -> None:
        self.ended.append((identity, bank))


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisSessionStore]:
    client = Redis.from_url(redis_url)
    yield RedisSessionStore(client)
    await client.aclose()


def assistant_lines(session: AgentSession[CallState]) -> list[str | None]:
    return [m.text_content for m in session.history.messages() if m.role == "assistant"]


async def test_a_verified_caller_gets_the_banking_agent_and_the_call_is_closed_once(
    store: RedisSessionStore,
) -> None:
    wiring = Wiring()
    voice_call = VoiceCall(
        store=store, bank_factory=wiring.bank_factory, on_end=wiring.on_end, clock=lambda: 1_700_000_000.0
    )
    scripted = ScriptedLLM([[call("get_balance", "c1")], "You have 120."])
    async with AgentSession[CallState](llm=scripted) as session:
        assert await voice_call.start(session, METADATA, room_name="room-1")
        record = await store.get("room-1")
        assert record is not None
        assert (record.user_id, record.state, record.started_at) == ("alice", "active", 1_700_000_000.0)
        assert record.grant_sha256 == grant_digest(GRANT)
        assert session.userdata.identity.user_id == "alice"

        result = await session.run(user_input="Balance?")
        result.expect[1].is_function_call_output(is_error=False)

    assert wiring.built == [CallerIdentity("alice", "room-1", GRANT)]
    await voice_call.end()
    await voice_call.end()
    ended = await store.get("room-1")
    assert ended is not None
    assert ended.state == "ended"
    assert wiring.ended == [(CallerIdentity("alice", "room-1", GRANT), wiring.bank)]


async def test_hanging_up_cancels_every_payment_waiting_for_approval(store: RedisSessionStore) -> None:
    wiring = Wiring()
    wiring.bank.approval_above = Decimal("50")
    voice_call = VoiceCall(store=store, bank_factory=wiring.bank_factory, on_end=wiring.on_end)
    payment = {"from_account": "account-1", "payee": "payee-1", "amount": "75.00"}
    scripted = ScriptedLLM(
        [
            [call("get_balance", "c1"), call("list_payees", "c2")],
            "I see them.",
            [call("prepare_payment", "p1", **payment)],
            "Pay 75.00 to Jane S.?",
            [call("make_payment", "m1", confirmation_id="confirm-1", **payment)],
        ]
    )
    async with AgentSession[CallState](llm=scripted) as session:
        assert await voice_call.start(session, METADATA, room_name="room-1")
        await session.run(user_input="Accounts and payees?")
        await session.run(user_input="Pay Jane 75.")
        await session.run(user_input="Yes.")
        assert "needs your approval in your banking app" in (assistant_lines(session)[-1] or "")
        assert len(session.userdata.approvals) == 1
        await voice_call.end()
        assert len(session.userdata.approvals) == 0

    (held,) = wiring.bank.held
    assert held.cancelled
    assert wiring.bank.payments == {}
    assert wiring.ended == [(CallerIdentity("alice", "room-1", GRANT), wiring.bank)]


@pytest.mark.parametrize(
    ("metadata", "room", "code"),
    [
        (None, "room-1", "missing"),
        ("{not json", "room-1", "not_json"),
        (
            json.dumps({"user_id": "alice", "session_id": "room-1", "session_grant": "nope"}),
            "room-1",
            "invalid_grant",
        ),
        (METADATA, "room-2", "session_mismatch"),
    ],
)
async def test_an_unverified_caller_is_told_and_nothing_is_called(
    store: RedisSessionStore, metadata: str | None, room: str, code: str
) -> None:
    wiring = Wiring()
    voice_call = VoiceCall(store=store, bank_factory=wiring.bank_factory, on_end=wiring.on_end)
    scripted = ScriptedLLM()
    async with AgentSession[CallState](llm=scripted) as session:
        assert not await voice_call.start(session, metadata, room_name=room)
        assert assistant_lines(session) == [CANNOT_VERIFY]
    await voice_call.end()

    assert voice_call.refusal == code
    assert wiring.built == []
    assert wiring.ended == []
    assert scripted.contexts == []
    assert await store.get("room-1") is None
    assert await store.get("room-2") is None


async def test_a_refused_grant_exchange_is_spoken_and_the_record_closed(store: RedisSessionStore) -> None:
    wiring = Wiring(fail=AuthorizationLost("exchange refused"))
    voice_call = VoiceCall(store=store, bank_factory=wiring.bank_factory, on_end=wiring.on_end)
    async with AgentSession[CallState](llm=ScriptedLLM()) as session:
        assert not await voice_call.start(session, METADATA, room_name="room-1")
        assert assistant_lines(session) == [AUTHORIZATION_LOST]
    await voice_call.end()

    assert voice_call.refusal == "authorization_lost"
    record = await store.get("room-1")
    assert record is not None
    assert record.state == "ended"
    assert wiring.ended == []  # no bank, no refresh family to revoke
