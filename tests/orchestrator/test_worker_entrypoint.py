"""The worker's job, `entrypoint()`, in a room the LiveKit server drives, with the real agent session.

A real `JobContext` runs the job as livekit-agents' job process does; the room, the RoomService and the
caller's app are the fakes of `livekit_fakes`; the session store is a real Redis; the LLM is scripted.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncIterator

import pytest
from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents.voice.room_io import RoomOptions
from redis.asyncio import Redis

from orchestrator._agent._banking_agent import CallState
from orchestrator._agent._speech import AUTHORIZATION_LOST, CANNOT_VERIFY
from orchestrator._bank._protocol import AuthorizationLost, Bank
from orchestrator._call._identity import CallerIdentity
from orchestrator._call._session_store import RedisSessionStore
from orchestrator._call._settings import AgentSettings
from orchestrator._call._voice_call import AgentWiring
from orchestrator._call._worker import entrypoint, inference_session
from tests.support.agent import MemoryBank, ScriptedLLM, call
from tests.support.livekit import FakeRoom, JobRunner, RoomService

API_KEY, API_SECRET = "devkey", "a-livekit-api-secret-of-32-chars!"
ROOM = "room-1"
GRANT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
ALICE = json.dumps({"user_id": "alice", "session_id": ROOM, "session_grant": GRANT})
BOB = json.dumps({"user_id": "bob", "session_id": ROOM, "session_grant": GRANT.replace("YWxpY2U", "Ym9i")})
# Audio needs a real media server; the caller types on lk.chat and reads lk.transcription instead.
TEXT_ONLY = RoomOptions(audio_input=False, audio_output=False)


class Wiring:
    """The bank factory and on_end hook of the worker, remembering their calls."""

    def __init__(self, *, fail: AuthorizationLost | None = None) -> None:
        self.bank = MemoryBank()
        self.fail = fail
        self.release = asyncio.Event()
        self.release.set()
        self.exchanging = asyncio.Event()
        self.built: list[CallerIdentity] = []
        self.ended: list[CallerIdentity] = []

    async def bank_factory(self, identity: CallerIdentity) -> Bank:
        self.built.append(identity)
        self.exchanging.set()
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return self.bank

    async def on_end(self, identity: CallerIdentity, bank: Bank) -> None:
        assert bank is self.bank
        self.ended.append(identity)


class Call:
    """One job in one room: the LiveKit side, the worker's wiring and the scripted model."""

    def __init__(self, room: FakeRoom, service: RoomService, redis_url: str | None, wiring: Wiring) -> None:
        self.room = room
        self.wiring = wiring
        self.llm = ScriptedLLM()
        self.sessions: list[AgentSession[CallState]] = []
        self.runner = JobRunner(room, livekit_url=service.url)
        self.service = service
        self.settings = AgentSettings(redis_url=redis_url)

    def new_session(self, settings: AgentSettings) -> AgentSession[CallState]:
        assert settings is self.settings
        self.sessions.append(AgentSession[CallState](llm=self.llm))
        return self.sessions[-1]

    def start(self) -> asyncio.Task[str]:
        job = functools.partial(
            entrypoint,
            wiring=AgentWiring(self.wiring.bank_factory, self.wiring.on_end),
            settings=self.settings,
            new_session=self.new_session,
            media=TEXT_ONLY,
        )
        return asyncio.create_task(self.runner.run(job))


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisSessionStore]:
    client = Redis.from_url(redis_url)
    yield RedisSessionStore(client)
    await client.aclose()


@pytest.fixture
async def service(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RoomService]:
    rooms: dict[str, FakeRoom] = {}
    async with RoomService(rooms, api_key=API_KEY, api_secret=API_SECRET).running() as running:
        # The worker exports its LiveKit credentials to the job, where JobContext.api finds them.
        monkeypatch.setenv("LIVEKIT_URL", running.url)
        monkeypatch.setenv("LIVEKIT_API_KEY", API_KEY)
        monkeypatch.setenv("LIVEKIT_API_SECRET", API_SECRET)
        yield running


def new_call(service: RoomService, redis_url: str | None, wiring: Wiring | None = None) -> Call:
    room = FakeRoom(ROOM)
    service.rooms[ROOM] = room
    return Call(room, service, redis_url, wiring or Wiring())


async def test_a_verified_caller_is_served_and_hanging_up_ends_the_call_once(
    service: RoomService, redis_url: str, store: RedisSessionStore
) -> None:
    voice = new_call(service, redis_url)
    job = voice.start()
    voice.room.join("alice-phone", ALICE)
    await voice.room.agent_state("listening")
    assert voice.runner.connected
    assert voice.room.connected_with == (service.url, "agent-join-token")
    record = await store.get(ROOM)
    assert record is not None
    assert (record.user_id, record.state) == ("alice", "active")

    voice.llm.script([call("get_balance", "c1")], "Your checking account ending in 1234 holds 120.00.")
    await voice.room.chat("alice-phone", "What is my balance?")
    assert await voice.room.agent_said() == "Your checking account ending in 1234 holds 120.00."
    assert voice.wiring.bank.calls == ["get_balance"]

    voice.room.leave("alice-phone", rtc.DisconnectReason.CLIENT_INITIATED)
    assert await job == "caller left"
    assert voice.wiring.built == [CallerIdentity("alice", ROOM, GRANT)]
    assert voice.wiring.ended == [CallerIdentity("alice", ROOM, GRANT)]  # the refresh family is revoked once
    ended = await store.get(ROOM)
    assert ended is not None
    assert ended.state == "ended"
    assert not voice.room.isconnected()
    assert service.deleted == []  # a call that ends normally leaves the room to LiveKit's own timeout


@pytest.mark.parametrize(
    ("metadata", "refusal"),
    [(None, "missing"), ("{not json", "not_json"), (ALICE.replace(ROOM, "room-2"), "session_mismatch")],
)
async def test_an_unverified_caller_is_told_and_the_room_is_deleted(
    service: RoomService, redis_url: str, store: RedisSessionStore, metadata: str | None, refusal: str
) -> None:
    voice = new_call(service, redis_url)
    job = voice.start()
    voice.room.join("caller", metadata)
    assert await voice.room.agent_said() == CANNOT_VERIFY
    assert await job == f"call refused: {refusal}"
    await voice.room.deleted.wait()
    assert service.deleted == [ROOM]
    assert service.refused == 0  # the worker's API credentials were accepted
    assert voice.room.remote_participants == {}
    assert voice.wiring.built == []
    assert voice.wiring.ended == []
    assert voice.llm.contexts == []
    assert await store.get(ROOM) is None


async def test_a_refused_grant_exchange_is_spoken_the_record_closed_and_the_room_deleted(
    service: RoomService, redis_url: str, store: RedisSessionStore
) -> None:
    voice = new_call(service, redis_url, Wiring(fail=AuthorizationLost("exchange refused")))
    job = voice.start()
    voice.room.join("alice-phone", ALICE)
    assert await voice.room.agent_said() == AUTHORIZATION_LOST
    assert await job == "call refused: authorization_lost"
    assert service.deleted == [ROOM]
    record = await store.get(ROOM)
    assert record is not None
    assert record.state == "ended"
    assert voice.wiring.ended == []  # no bank, no refresh family to revoke


async def test_a_metadata_change_mid_call_does_not_change_who_the_agent_acts_for(
    service: RoomService, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    voice = new_call(service, redis_url)
    job = voice.start()
    voice.room.join("alice-phone", ALICE)
    await voice.room.agent_state("listening")

    with caplog.at_level(logging.WARNING, logger="orchestrator._call._worker"):
        voice.room.change_metadata("alice-phone", BOB)
    assert "keeps the identity it started with" in caplog.text
    assert GRANT not in caplog.text

    voice.llm.script([call("list_payees", "c1")], "You have two payees.")
    await voice.room.chat("alice-phone", "Who can I pay?")
    assert await voice.room.agent_said() == "You have two payees."
    assert voice.sessions[0].userdata.identity.user_id == "alice"
    assert [i.user_id for i in voice.wiring.built] == ["alice"]  # no second exchange, no bob

    voice.room.leave("alice-phone", rtc.DisconnectReason.CLIENT_INITIATED)
    assert await job == "caller left"
    assert [i.user_id for i in voice.wiring.ended] == ["alice"]


async def test_a_caller_who_leaves_during_the_exchange_ends_the_call_and_its_family_is_revoked(
    service: RoomService, redis_url: str, store: RedisSessionStore
) -> None:
    wiring = Wiring()
    wiring.release.clear()
    voice = new_call(service, redis_url, wiring)
    job = voice.start()
    voice.room.join("alice-phone", ALICE)
    await wiring.exchanging.wait()
    voice.room.leave("alice-phone", rtc.DisconnectReason.CLIENT_INITIATED)
    wiring.release.set()  # the exchange answers after the caller has gone

    assert await job == "caller left"
    assert [i.user_id for i in wiring.ended] == ["alice"]
    record = await store.get(ROOM)
    assert record is not None
    assert record.state == "ended"


async def test_the_job_ends_when_the_agent_session_closes(service: RoomService, redis_url: str) -> None:
    voice = new_call(service, redis_url)
    job = voice.start()
    voice.room.join("alice-phone", ALICE)
    await voice.room.agent_state("listening")
    voice.sessions[0].shutdown()  # a model error or a tool can close the session while the caller stays
    assert await job == "session closed: user_initiated"
    assert [i.user_id for i in voice.wiring.ended] == ["alice"]


async def test_the_room_deleted_by_the_server_ends_the_call(service: RoomService, redis_url: str) -> None:
    voice = new_call(service, redis_url)
    job = voice.start()
    voice.room.join("alice-phone", ALICE)
    await voice.room.agent_state("listening")
    voice.room.server_deleted()
    assert await job == "caller left"
    assert [i.user_id for i in voice.wiring.ended] == ["alice"]


async def test_the_agent_waits_for_a_caller_who_joins_late_and_serves_only_them(
    service: RoomService, caplog: pytest.LogCaptureFixture
) -> None:
    voice = new_call(service, None)  # no REDIS_URL: the session record stays in the worker's memory
    job = voice.start()
    await voice.room.wait_connected()
    assert voice.wiring.built == []  # nobody to identify yet
    voice.room.join("alice-phone", ALICE)
    await voice.room.agent_state("listening")
    voice.room.join("someone-else", BOB)
    with caplog.at_level(logging.WARNING, logger="orchestrator._call._worker"):
        voice.room.change_metadata("someone-else", ALICE)
    assert caplog.records == []  # only the caller's metadata matters
    voice.room.leave(
        "someone-else", rtc.DisconnectReason.CLIENT_INITIATED
    )  # not the caller: the call goes on
    voice.llm.script("Hello Alice.")
    await voice.room.chat("alice-phone", "Hello?")
    assert await voice.room.agent_said() == "Hello Alice."
    voice.room.leave("alice-phone", rtc.DisconnectReason.CLIENT_INITIATED)
    assert await job == "caller left"
    assert [i.user_id for i in voice.wiring.built] == ["alice"]


async def test_regression_no_other_participant_can_drive_or_read_the_call(
    service: RoomService, redis_url: str
) -> None:
    """livekit-agents hosts a remote-session endpoint on the room by default: any participant could send
    the agent input as the caller or read the call's history. The worker turns it off."""
    voice = new_call(service, redis_url)
    job = voice.start()
    voice.room.join("alice-phone", ALICE)
    await voice.room.agent_state("listening")
    assert voice.room.byte_stream_topics == []
    voice.room.leave("alice-phone", rtc.DisconnectReason.CLIENT_INITIATED)
    assert await job == "caller left"


async def test_the_production_session_uses_the_inference_models_the_settings_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIVEKIT_API_KEY", API_KEY)  # exported by the worker to its jobs
    monkeypatch.setenv("LIVEKIT_API_SECRET", API_SECRET)
    settings = AgentSettings(
        ORCHESTRATOR_STT="deepgram/nova-3",
        ORCHESTRATOR_LLM="openai/gpt-4.1-mini",
        ORCHESTRATOR_TTS="cartesia/sonic-2",
    )
    session = inference_session(settings)
    assert session.stt is not None
    assert session.llm is not None
    assert session.tts is not None
    assert (session.stt.model, session.llm.model, session.tts.model) == (
        "deepgram/nova-3",
        "openai/gpt-4.1-mini",
        "cartesia/sonic-2",
    )
