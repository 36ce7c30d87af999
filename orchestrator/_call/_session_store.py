"""The record of a voice session (user, session id, start, state) and its in-process and Redis stores."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

__all__ = [
    "MemorySessionStore",
    "RedisSessionStore",
    "SessionRecord",
    "SessionStore",
    "grant_digest",
]

SessionState = Literal["active", "ended"]

ACTIVE_TTL = 13 * 3600  # a little over the refresh family's 12 h absolute lifetime
ENDED_TTL = 600  # an ended record lingers briefly for operators, then expires


def grant_digest(grant: str) -> str:
    """SHA-256 hex digest of the session grant: lets a record be matched to its grant without holding it."""
    return hashlib.sha256(grant.encode()).hexdigest()


@dataclass(frozen=True)
class SessionRecord:
    """One voice session as recorded while the call runs; never holds a token."""

    session_id: str
    user_id: str
    started_at: float
    state: SessionState = "active"
    ended_at: float | None = None
    grant_sha256: str | None = None


class SessionStore(Protocol):
    """Where session records live for the duration of a call."""

    async def open(self, record: SessionRecord) -> None: ...

    async def close(self, session_id: str) -> None: ...

    async def get(self, session_id: str) -> SessionRecord | None: ...


class MemorySessionStore:
    """In-process store (the embedded default); ended records expire after `ended_ttl` by the given clock."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        active_ttl: float = ACTIVE_TTL,
        ended_ttl: float = ENDED_TTL,
    ) -> None:
        self._clock = clock
        self._active_ttl = active_ttl
        self._ended_ttl = ended_ttl
        self._records: dict[str, tuple[SessionRecord, float]] = {}

    async def open(self, record: SessionRecord) -> None:
        self._records[record.session_id] = (record, self._clock() + self._active_ttl)

    async def close(self, session_id: str) -> None:
        current = await self.get(session_id)
        if current is None or current.state == "ended":
            return
        now = self._clock()
        ended = replace(current, state="ended", ended_at=now)
        self._records[session_id] = (ended, now + self._ended_ttl)

    async def get(self, session_id: str) -> SessionRecord | None:
        entry = self._records.get(session_id)
        if entry is None:
            return None
        record, expires_at = entry
        if self._clock() >= expires_at:
            del self._records[session_id]
            return None
        return record


class RedisSessionStore:
    """Redis store: one hash per session under `voicebank:session:<id>`, always with a TTL."""

    PREFIX = "voicebank:session:"

    def __init__(
        self,
        client: Redis,
        *,
        clock: Callable[[], float] = time.time,
        active_ttl: int = ACTIVE_TTL,
        ended_ttl: int = ENDED_TTL,
    ) -> None:
        self._redis = client
        self._clock = clock
        self._active_ttl = active_ttl
        self._ended_ttl = ended_ttl

    def key(self, session_id: str) -> str:
        """The Redis key of one session's record."""
        return self.PREFIX + session_id

    async def open(self, record: SessionRecord) -> None:
        fields: dict[FieldT, EncodableT] = {
            "session_id": record.session_id,
            "user_id": record.user_id,
            "started_at": repr(record.started_at),
            "state": record.state,
        }
        if record.grant_sha256 is not None:
            fields["grant_sha256"] = record.grant_sha256
        key = self.key(record.session_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, self._active_ttl)
            await pipe.execute()

    async def close(self, session_id: str) -> None:
        key = self.key(session_id)
        # Closing a record that already expired must not recreate a partial one.
        if not await self._redis.exists(key):
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"state": "ended", "ended_at": repr(self._clock())})
            pipe.expire(key, self._ended_ttl)
            await pipe.execute()

    async def get(self, session_id: str) -> SessionRecord | None:
        raw = await self._redis.hgetall(self.key(session_id))
        if not raw:
            return None
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if "session_id" not in fields:  # a partial record left by a close racing its expiry
            return None
        state: SessionState = "ended" if fields.get("state") == "ended" else "active"
        ended_at = fields.get("ended_at")
        return SessionRecord(
            session_id=fields["session_id"],
            user_id=fields["user_id"],
            started_at=float(fields["started_at"]),
            state=state,
            ended_at=float(ended_at) if ended_at is not None else None,
            grant_sha256=fields.get("grant_sha256"),
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
