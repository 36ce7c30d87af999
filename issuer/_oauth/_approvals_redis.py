"""Approval requests on Redis, shared by issuer replicas: each transition is one Lua script.

A transition sent twice is not the same as once (a second decision is refused as already decided, a second
poll of an approved request finds it issued), so each script is sent `keys.exactly_once`, on a connection
proved alive just before; reads are resent after a dropped connection (`keys.idempotent`).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, cast

import redis.asyncio as aioredis

from issuer._oauth._approvals import (
    GRACE,
    MAX_PENDING_PER_USER,
    SLOW_DOWN_STEP,
    ApprovalRequest,
    DecideOutcome,
    PollOutcome,
)
from issuer._oauth._authorization_details import AuthorizationDetail
from keys import exactly_once, idempotent

# KEYS[1] request hash, KEYS[2] the user's index (zset: auth_req_id by expiry).
# ARGV: now, cap, ttl, expires_at, auth_req_id, then field/value pairs.
_CREATE = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 0 end
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
return 1
"""
# KEYS[1] request hash. ARGV: now, new state.
_DECIDE = """
local r = redis.call('HMGET', KEYS[1], 'state', 'expires_at')
if not r[1] then return 'unknown' end
if tonumber(ARGV[1]) >= tonumber(r[2]) then return 'expired' end
if r[1] ~= 'pending' then return 'decided' end
redis.call('HSET', KEYS[1], 'state', ARGV[2])
return 'ok'
"""
# KEYS[1] request hash. ARGV: now, client id, slow-down step.
_POLL = """
local r = redis.call('HMGET', KEYS[1], 'state', 'expires_at', 'client_id', 'last_poll', 'interval')
if not r[1] then return 'unknown' end
if r[3] ~= ARGV[2] then return 'wrong_client' end
if r[1] == 'issued' then return 'issued' end
local now = tonumber(ARGV[1])
if now >= tonumber(r[2]) then return 'expired' end
if r[1] == 'denied' then return 'denied' end
if r[1] == 'approved' then
  redis.call('HSET', KEYS[1], 'state', 'issued', 'last_poll', ARGV[1])
  return 'approved'
end
local interval = tonumber(r[5])
if now - tonumber(r[4]) < interval then
  redis.call('HSET', KEYS[1], 'interval', tostring(interval + tonumber(ARGV[3])), 'last_poll', ARGV[1])
  return 'slow_down'
end
redis.call('HSET', KEYS[1], 'last_poll', ARGV[1])
return 'pending'
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _digest(value: str) -> str:
    # Client-chosen ids never shape Redis keys.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


class RedisApprovalStore:
    """Approval requests shared by every issuer replica."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "voicebank:approval") -> None:
        self._client = client
        self._prefix = prefix
        self._create = client.register_script(_CREATE)
        self._decide = client.register_script(_DECIDE)
        self._poll = client.register_script(_POLL)

    def _request_key(self, auth_req_id: str) -> str:
        return f"{self._prefix}:req:{_digest(auth_req_id)}"

    def _user_key(self, user_id: str) -> str:
        return f"{self._prefix}:user:{_digest(user_id)}"

    async def create(self, request: ApprovalRequest, *, now: float) -> bool:
        fields = {
            "auth_req_id": request.auth_req_id,
            "client_id": request.client_id,
            "user_id": request.user_id,
            "sid": request.sid,
            "detail": json.dumps(request.detail.claim(), separators=(",", ":")),
            "binding_message": json.dumps(request.binding_message),
            "created_at": repr(request.created_at),
            "expires_at": repr(request.expires_at),
            "interval": str(request.interval),
            "state": request.state,
            "last_poll": repr(request.created_at),
        }
        ttl = max(1, math.ceil(request.expires_at + GRACE - now))
        args: list[str | int | float] = [repr(now), MAX_PENDING_PER_USER, ttl]
        args += [repr(request.expires_at), request.auth_req_id]
        for name, value in fields.items():
            args += [name, value]
        keys = [self._request_key(request.auth_req_id), self._user_key(request.user_id)]
        return bool(await exactly_once(self._client, lambda c: self._create(keys=keys, args=args, client=c)))

    async def get(self, auth_req_id: str) -> ApprovalRequest | None:
        key = self._request_key(auth_req_id)
        raw = await idempotent(self._client, lambda: self._client.hgetall(key))
        if not raw:
            return None
        data = {_text(k): _text(v) for k, v in raw.items()}
        return ApprovalRequest(
            auth_req_id=data["auth_req_id"],
            client_id=data["client_id"],
            user_id=data["user_id"],
            sid=data["sid"],
            detail=AuthorizationDetail.from_claim(json.loads(data["detail"])),
            binding_message=json.loads(data["binding_message"]),
            created_at=float(data["created_at"]),
            expires_at=float(data["expires_at"]),
            interval=int(data["interval"]),
            state=cast(Any, data["state"]),
            last_poll=float(data["last_poll"]),
        )

    async def pending(self, user_id: str, *, now: float) -> list[ApprovalRequest]:
        key = self._user_key(user_id)
        ids = await idempotent(self._client, lambda: self._client.zrangebyscore(key, f"({now!r}", "+inf"))
        found = []
        for auth_req_id in ids:
            request = await self.get(_text(auth_req_id))
            if request is not None and request.state == "pending" and request.expires_at > now:
                found.append(request)
        return sorted(found, key=lambda r: (r.created_at, r.auth_req_id))

    async def decide(self, auth_req_id: str, *, approve: bool, now: float) -> DecideOutcome:
        state = "approved" if approve else "denied"
        keys = [self._request_key(auth_req_id)]
        outcome = await exactly_once(
            self._client, lambda c: self._decide(keys=keys, args=[repr(now), state], client=c)
        )
        return cast(DecideOutcome, _text(outcome))

    async def poll(
        self, auth_req_id: str, *, client_id: str, now: float
    ) -> tuple[PollOutcome, ApprovalRequest | None]:
        key = self._request_key(auth_req_id)
        args: list[str | int] = [repr(now), client_id, SLOW_DOWN_STEP]
        answer = await exactly_once(self._client, lambda c: self._poll(keys=[key], args=args, client=c))
        outcome = cast(PollOutcome, _text(answer))
        if outcome != "approved":
            return outcome, None
        request = await self.get(auth_req_id)
        return ("approved", request) if request is not None else ("unknown", None)
