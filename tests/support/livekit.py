"""The LiveKit server, faked: a room, a RoomService and the job runner, following livekit's own interfaces.

- `FakeRoom` stands in for `livekit.rtc.Room` where the FFI would talk to a LiveKit server: it holds real
  `rtc.RemoteParticipant` objects (built from the FFI's own `ParticipantInfo`, as the real room builds
  them), emits the real room's events with the real arguments (`participant_connected`,
  `participant_disconnected`, `participant_metadata_changed`, `connection_state_changed`,
  `disconnected`) and carries the text streams a client app uses: the caller types on `lk.chat` and
  reads the agent on `lk.transcription`.
- `RoomService` answers the Twirp `DeleteRoom` call of `livekit-api` over real HTTP on loopback, checks the
  bearer token with the API secret, and deletes the room as the server does (everyone is disconnected).
- `JobRunner` runs an entrypoint with a real `JobContext` the way livekit-agents' job process does
  (`ipc/job_proc_lazy_main.py`): the job context installed, shutdown on `ctx.shutdown()` or when the
  room disconnects, then the primary session closed, the room left and the shutdown callbacks run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
import uvicorn
from livekit import api, rtc
from livekit.agents import JobContext, JobExecutorType, JobProcess
from livekit.agents.job import JobAcceptArguments, RunningJobInfo, _JobContextVar
from livekit.agents.utils import http_context
from livekit.protocol import agent as agent_proto
from livekit.protocol import models
from livekit.protocol import room as room_proto
from livekit.rtc._proto import participant_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["FakeRoom", "JobRunner", "RoomService", "Stream"]

TOPIC_CHAT = "lk.chat"
TOPIC_TRANSCRIPTION = "lk.transcription"
FINAL = "lk.transcription_final"
_ids = itertools.count(1)


@dataclass
class Stream:
    """One text stream the agent opened, as a client app receives it."""

    topic: str
    sender_identity: str
    attributes: dict[str, str]
    chunks: list[str] = field(default_factory=list)
    closed_attributes: dict[str, str] | None = None

    @property
    def text(self) -> str:
        return "".join(self.chunks)


class _TextStreamWriter:
    """Follows `rtc.TextStreamWriter`: `write`, `aclose(reason=, attributes=)`, `info`."""

    def __init__(self, room: FakeRoom, stream: Stream) -> None:
        self._room = room
        self.stream = stream
        self.info = rtc.TextStreamInfo(
            stream_id=f"ST_{next(_ids)}",
            mime_type="text/plain",
            topic=stream.topic,
            timestamp=0,
            size=None,
            attributes=stream.attributes,
            attachments=[],
        )

    async def write(self, text: str) -> None:
        self.stream.chunks.append(text)

    async def aclose(self, *, reason: str = "", attributes: dict[str, str] | None = None) -> None:
        del reason
        self.stream.closed_attributes = dict(attributes or {})
        self._room._stream_closed(self.stream)


class _TextStreamReader:
    """Follows `rtc.TextStreamReader` for a whole message: `info` and `read_all()`."""

    def __init__(self, text: str, topic: str) -> None:
        self._text = text
        self.info = rtc.TextStreamInfo(
            stream_id=f"ST_{next(_ids)}",
            mime_type="text/plain",
            topic=topic,
            timestamp=0,
            size=len(text.encode()),
            attributes={},
            attachments=[],
        )

    async def read_all(self) -> str:
        return self._text


class _LocalParticipant:
    """The agent's side of the room; follows the parts of `rtc.LocalParticipant` that RoomIO uses."""

    def __init__(self, room: FakeRoom) -> None:
        self._room = room
        self.identity = "agent-AJ_1"
        self.sid = "PA_agent"
        self.kind = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        self.attributes: dict[str, str] = {}
        self.track_publications: dict[str, rtc.LocalTrackPublication] = {}

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self.attributes.update(attributes)
        await self._room._notify()

    async def publish_transcription(self, transcription: rtc.Transcription) -> None:
        raise AssertionError("legacy transcriptions are for clients of protocol < 3; ours are newer")

    async def stream_text(
        self,
        *,
        destination_identities: list[str] | None = None,
        topic: str = "",
        attributes: dict[str, str] | None = None,
        stream_id: str | None = None,
        reply_to_id: str | None = None,
        total_size: int | None = None,
        sender_identity: str | None = None,
    ) -> _TextStreamWriter:
        del destination_identities, stream_id, reply_to_id, total_size
        stream = Stream(topic, sender_identity or self.identity, dict(attributes or {}))
        return _TextStreamWriter(self._room, stream)


class FakeRoom(rtc.EventEmitter[str]):
    """A LiveKit room seen from the agent, driven by the test as the LiveKit server would drive it."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.metadata = ""
        self.local_participant = _LocalParticipant(self)
        self.connection_state: rtc.ConnectionState.ValueType = rtc.ConnectionState.CONN_DISCONNECTED
        self._remote: dict[str, rtc.RemoteParticipant] = {}  # by identity, as rtc.Room keys them
        self._text_handlers: dict[str, Callable[[Any, str], None]] = {}
        self.byte_stream_topics: list[str] = []
        self.changed = asyncio.Condition()
        self.connected_with: tuple[str, str] | None = None
        self.deleted = asyncio.Event()
        self._finals: asyncio.Queue[Stream] = asyncio.Queue()

    # -- the rtc.Room interface --

    @property
    def remote_participants(self) -> Mapping[str, rtc.RemoteParticipant]:
        return self._remote

    def isconnected(self) -> bool:
        return self.connection_state == rtc.ConnectionState.CONN_CONNECTED

    async def connect(self, url: str, token: str, options: rtc.RoomOptions | None = None) -> None:
        del options
        self.connected_with = (url, token)
        self._set_state(rtc.ConnectionState.CONN_CONNECTED)

    async def disconnect(
        self, *, reason: rtc.DisconnectReason.ValueType = rtc.DisconnectReason.CLIENT_INITIATED
    ) -> None:
        if not self.isconnected():
            return
        self._set_state(rtc.ConnectionState.CONN_DISCONNECTED)
        self.emit("disconnected", reason)

    def register_text_stream_handler(self, topic: str, handler: Callable[[Any, str], None]) -> None:
        if topic in self._text_handlers:
            raise ValueError(f"text stream handler for topic '{topic}' already set")
        self._text_handlers[topic] = handler

    def unregister_text_stream_handler(self, topic: str) -> None:
        self._text_handlers.pop(topic, None)

    def register_byte_stream_handler(self, topic: str, handler: Callable[[Any, str], None]) -> None:
        del handler
        self.byte_stream_topics.append(topic)

    def unregister_byte_stream_handler(self, topic: str) -> None:
        self.byte_stream_topics.remove(topic)

    # -- what the server and the caller's app do --

    def join(self, identity: str, metadata: str | None) -> rtc.RemoteParticipant:
        """A client joins with a participant token carrying `metadata`, then becomes active."""
        info = participant_pb2.ParticipantInfo(
            sid=f"PA_{next(_ids)}",
            identity=identity,
            name=identity,
            metadata=metadata or "",
            kind=rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
            state=rtc.ParticipantState.PARTICIPANT_STATE_ACTIVE,
            client_protocol=3,
        )
        # Handle id 0: a participant the FFI never owned, so nothing is released when it goes.
        participant = rtc.RemoteParticipant(participant_pb2.OwnedParticipant(info=info))
        self._remote[identity] = participant
        if self.isconnected():  # before that, the agent finds it among the room's participants on connect
            self.emit("participant_connected", participant)
            self.emit("participant_active", participant)
        return participant

    def leave(self, identity: str, reason: rtc.DisconnectReason.ValueType) -> None:
        """The participant is gone (the client hung up, or the server removed it)."""
        participant = self._remote.pop(identity)
        participant._info.disconnect_reason = reason
        self.emit("participant_disconnected", participant)

    def change_metadata(self, identity: str, metadata: str) -> None:
        """`UpdateParticipant` changed the metadata: the room updates it, then tells its listeners."""
        participant = self._remote[identity]
        old = participant.metadata
        participant._info.metadata = metadata
        self.emit("participant_metadata_changed", participant, old, metadata)

    async def chat(self, identity: str, text: str) -> None:
        """The caller sends a chat message (the client SDK's `sendText` on `lk.chat`)."""
        handler = self._text_handlers[TOPIC_CHAT]
        handler(_TextStreamReader(text, TOPIC_CHAT), identity)

    async def wait_connected(self) -> None:
        """Wait until the agent has joined the room."""
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(self.isconnected), timeout=30)

    async def agent_state(self, state: str) -> None:
        """Wait until the agent publishes this state (`lk.agent.state`: listening, thinking, ...)."""
        async with self.changed:
            await asyncio.wait_for(
                self.changed.wait_for(
                    lambda: self.local_participant.attributes.get("lk.agent.state") == state
                ),
                timeout=30,
            )

    async def agent_said(self) -> str:
        """The next whole reply the agent published to the caller's app."""
        return (await asyncio.wait_for(self._finals.get(), timeout=30)).text

    def server_deleted(self) -> None:
        """DeleteRoom: every participant is disconnected, then the agent's own connection."""
        for participant in list(self._remote.values()):
            self.leave(participant.identity, rtc.DisconnectReason.ROOM_DELETED)
        if self.isconnected():
            self._set_state(rtc.ConnectionState.CONN_DISCONNECTED)
            self.emit("disconnected", rtc.DisconnectReason.ROOM_DELETED)
        self.deleted.set()

    def _set_state(self, state: rtc.ConnectionState.ValueType) -> None:
        self.connection_state = state
        self.emit("connection_state_changed", state)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    def _stream_closed(self, stream: Stream) -> None:
        final = (stream.closed_attributes or {}).get(FINAL) == "true"
        if (
            stream.topic == TOPIC_TRANSCRIPTION
            and stream.sender_identity == self.local_participant.identity
            and final
        ):
            self._finals.put_nowait(stream)


class _QuietServer(uvicorn.Server):
    """Leaves the test process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class RoomService:
    """LiveKit's Twirp RoomService, DeleteRoom only, on a loopback port."""

    def __init__(self, rooms: dict[str, FakeRoom], *, api_key: str, api_secret: str) -> None:
        self.rooms = rooms
        self._verifier = api.TokenVerifier(api_key, api_secret)
        self.deleted: list[str] = []
        self.refused = 0
        app = Starlette(
            routes=[Route("/twirp/livekit.RoomService/DeleteRoom", self._delete, methods=["POST"])]
        )
        self._server = _QuietServer(uvicorn.Config(app, log_level="warning"))
        # Bound before serving: the URL is known at once, and early requests wait in the backlog.
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    async def _delete(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            claims = self._verifier.verify(token)
        except jwt.PyJWTError:  # any bad token is a 401, as the server answers
            claims = None
        if scheme != "Bearer" or claims is None or not claims.video.room_create:
            self.refused += 1
            return Response('{"code":"unauthenticated"}', status_code=401, media_type="application/json")
        delete = room_proto.DeleteRoomRequest.FromString(await request.body())
        self.deleted.append(delete.room)
        if delete.room in self.rooms:
            self.rooms[delete.room].server_deleted()
        body = room_proto.DeleteRoomResponse().SerializeToString()
        return Response(body, media_type="application/protobuf")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RoomService]:
        task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        try:
            yield self
        finally:
            self._server.should_exit = True
            await task


class _NoInference:
    async def do_inference(self, method: str, data: bytes) -> bytes | None:
        raise NotImplementedError("no local inference in these tests")


class JobRunner:
    """One job of an agent worker, run as livekit-agents' job process runs it."""

    def __init__(self, room: FakeRoom, *, livekit_url: str) -> None:
        self.room = room
        self.connected = False
        self._shutdown: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        job = agent_proto.Job(
            id=f"AJ_{next(_ids)}",
            room=models.Room(name=room.name, sid=f"RM_{next(_ids)}"),
            type=agent_proto.JobType.JT_ROOM,
        )
        info = RunningJobInfo(
            accept_arguments=JobAcceptArguments(
                identity=room.local_participant.identity, name="", metadata=""
            ),
            job=job,
            url=livekit_url,
            token="agent-join-token",
            worker_id="AW_test",
            fake_job=False,
        )
        self.ctx = JobContext(
            proc=JobProcess(executor_type=JobExecutorType.THREAD, user_arguments=None, http_proxy=None),
            info=info,
            room=room,  # type: ignore[arg-type]  # follows rtc.Room where the agent uses it
            on_connect=self._on_connect,
            on_shutdown=self._on_shutdown,
            inference_executor=_NoInference(),
        )
        room.on("disconnected", lambda *_: self._finish("room disconnected"))

    def _on_connect(self) -> None:
        self.connected = True

    def _on_shutdown(self, reason: str) -> None:
        self._finish(reason or "user requested")

    def _finish(self, reason: str) -> None:
        if not self._shutdown.done():
            self._shutdown.set_result(reason)

    async def run(self, entrypoint: Callable[[JobContext], Awaitable[None]]) -> str:
        """Run the job to its end; the shutdown reason. An entrypoint that raises fails the test."""
        token = _JobContextVar.set(self.ctx)
        try:
            async with http_context.open():
                entry = asyncio.create_task(entrypoint(self.ctx))
                entry.add_done_callback(
                    lambda t: t.cancelled() or t.exception() is None or self._finish("job crashed")
                )
                reason = await self._shutdown
                await entry  # the runner waits for the entrypoint (livekit gives it 15 s)
                if (session := self.ctx._primary_agent_session) is not None:
                    await session.aclose()
                await self.room.disconnect()
                await asyncio.gather(*(callback(reason) for callback in self.ctx._shutdown_callbacks))
                if tasks := self.ctx._pending_tasks:
                    await asyncio.gather(*tasks)
                return reason
        finally:
            await self.ctx._on_cleanup()
            _JobContextVar.reset(token)
