"""The refresh-token store on Redis: one Lua script spends a token atomically across issuer replicas.

Commands safe to send twice are resent once after a dropped connection (`keys.idempotent`): reads, writes
of fixed values, and the spend script, which remembers the successor it made so that a second sending of
the same rotation (its answer lost with the connection) is recognised as such, not as reuse. The successor
is random per request, so nobody else's request can pass for it. An operator's revocation of many
families answers how many were live, which a second run would get wrong: it is sent `keys.exactly_once`.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import redis.asyncio as aioredis

from issuer._oauth._refresh import (
    RefreshFamily,
    RefreshLifetimes,
    RefreshStore,
    is_live,
    new_refresh_token,
    one_target,
    reject,
    token_hash,
)
from keys import exactly_once, idempotent

# KEYS[1] family key, KEYS[2] token key, KEYS[3..5] the session's, user's and client's indexes. ARGV: ttl,
# now, the family's expiry, family id, client id, sub, sid, scope, DPoP key. One command instead of a
# 13-command transaction: the same writes, as atomic, at a fraction of the client's encoding and parsing.
# Each index is a sorted set of family ids scored by expiry: a creation drops the ids whose family expired,
# so a busy client's or user's index (renewed by every creation, never expiring as a whole) holds live ones
# only (amortised O(log n) per family instead of a set that grows with all history).
_CREATE = """
local ttl = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'client_id', ARGV[5], 'sub', ARGV[6], 'sid', ARGV[7], 'scope', ARGV[8],
  'created_at', ARGV[2], 'last_used', ARGV[2], 'revoked', '0', 'jkt', ARGV[9])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('HSET', KEYS[2], 'family', ARGV[4], 'spent', '0')
redis.call('EXPIRE', KEYS[2], ttl)
for i = 3, 5 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[2])
  redis.call('ZADD', KEYS[i], ARGV[3], ARGV[4])
  redis.call('EXPIRE', KEYS[i], ttl)
end
return 1
"""

# KEYS[1] token key. ARGV: now, idle, absolute, next hash, client id, key prefix, ttl, proved DPoP key.
# Keys are built from the stored family id, so this needs a single Redis (not a cluster). A spend answers the
# family's fields as it left them, so a refresh costs one round trip here, not a second read after it.
_SPEND = """
local rt = redis.call('HMGET', KEYS[1], 'family', 'spent', 'next')
if not rt[1] then return {'unknown'} end
local fkey = ARGV[6] .. ':fam:' .. rt[1]
local fam = redis.call('HMGET', fkey, 'client_id', 'created_at', 'last_used', 'revoked', 'jkt')
if not fam[1] or fam[4] == '1' then return {'revoked'} end
if fam[1] ~= ARGV[5] then redis.call('HSET', fkey, 'revoked', '1') return {'wrong_client'} end
if fam[5] and fam[5] ~= '' and fam[5] ~= ARGV[8] then return {'wrong_key'} end
if rt[2] == '1' then
  if rt[3] == ARGV[4] then -- this very rotation, sent again: its first run counts
    return {'ok', rt[1], redis.call('HGETALL', fkey)}
  end
  redis.call('HSET', fkey, 'revoked', '1') return {'reused'}
end
local now = tonumber(ARGV[1])
if now - tonumber(fam[2]) > tonumber(ARGV[3]) then
  redis.call('HSET', fkey, 'revoked', '1') return {'expired_absolute'}
end
if now - tonumber(fam[3]) > tonumber(ARGV[2]) then
  redis.call('HSET', fkey, 'revoked', '1') return {'expired_idle'}
end
redis.call('HSET', KEYS[1], 'spent', '1', 'next', ARGV[4])
local nkey = ARGV[6] .. ':rt:' .. ARGV[4]
redis.call('HSET', nkey, 'family', rt[1], 'spent', '0')
redis.call('EXPIRE', nkey, tonumber(ARGV[7]))
redis.call('HSET', fkey, 'last_used', ARGV[1])
return {'ok', rt[1], redis.call('HGETALL', fkey)}
"""

# KEYS[1] token key. ARGV: key prefix. The token's family id and the family's fields in one round trip
# (false for an unknown token); the family's fields are empty once its key expired.
_PEEK = """
local id = redis.call('HGET', KEYS[1], 'family')
if not id then return false end
return {id, redis.call('HGETALL', ARGV[1] .. ':fam:' .. id)}
"""


# KEYS[1] an index of family ids scored by when each family's key expires, KEYS[2] the same index as a plain
# set of an earlier version. ARGV: key prefix, now, idle, absolute. Revokes every family in either, drops ids
# whose family expired, and answers how many families were live (unexpired) when revoked.
_REVOKE_ALL = """
local now = tonumber(ARGV[2])
local live = 0
local function revoke(id, drop, index)
  local fkey = ARGV[1] .. ':fam:' .. id
  local fam = redis.call('HMGET', fkey, 'revoked', 'created_at', 'last_used')
  if not fam[1] then
    redis.call(drop, index, id)
  elseif fam[1] ~= '1' then
    redis.call('HSET', fkey, 'revoked', '1')
    if now - tonumber(fam[3]) <= tonumber(ARGV[3]) and now - tonumber(fam[2]) <= tonumber(ARGV[4]) then
      live = live + 1
    end
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do revoke(id, 'ZREM', KEYS[1]) end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do revoke(id, 'SREM', KEYS[2]) end
return live
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(flat: list[Any]) -> dict[str, str]:
    """A hash as Lua's HGETALL hands it back: field, value, field, value..."""
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


def _family(family_id: str, data: dict[str, str]) -> RefreshFamily | None:
    if not data:
        return None
    return RefreshFamily(
        family_id=family_id,
        client_id=data["client_id"],
        sub=data["sub"],
        sid=data["sid"],
        scope=data["scope"],
        created_at=float(data["created_at"]),
        last_used=float(data["last_used"]),
        revoked=data["revoked"] == "1",
        jkt=data.get("jkt") or None,
    )


class RedisRefreshStore(RefreshStore):
    """Refresh families shared by issuer replicas."""

    def __init__(
        self, client: aioredis.Redis, lifetimes: RefreshLifetimes, *, prefix: str = "voicebank:refresh"
    ) -> None:
        self._client = client
        self._lifetimes = lifetimes
        self._prefix = prefix
        # Keys outlive the absolute lifetime a little so reuse is still detected near its end.
        self._ttl = int(lifetimes.absolute + lifetimes.idle)
        self._create = client.register_script(_CREATE)
        self._spend = client.register_script(_SPEND)
        self._peek_script = client.register_script(_PEEK)
        self._revoke_all = client.register_script(_REVOKE_ALL)

    def _token_key(self, token: str) -> str:
        return f"{self._prefix}:rt:{token_hash(token)}"

    def _family_key(self, family_id: str) -> str:
        return f"{self._prefix}:fam:{family_id}"

    def _index_key(self, kind: str, value: str) -> str:
        # The families of one session, user or client, as a sorted set scored by each family's expiry (a
        # name of its own: the plain sets of earlier versions under `{kind}:` must not meet a ZADD); hashed
        # so client-chosen ids cannot shape keys.
        return f"{self._prefix}:{kind}-families:{hashlib.sha256(value.encode()).hexdigest()}"

    def _legacy_index_key(self, kind: str, value: str) -> str:
        # The plain set of versions before the sorted index: families a replica of such a version made
        # (a rolling upgrade) are still found by the revocations until the set expires on its own.
        return f"{self._prefix}:{kind}:{hashlib.sha256(value.encode()).hexdigest()}"

    async def create_family(
        self, *, client_id: str, sub: str, sid: str, scope: str, now: float, jkt: str | None = None
    ) -> tuple[str, str]:
        family_id = secrets.token_urlsafe(16)
        token = new_refresh_token()
        keys = [
            self._family_key(family_id),
            self._token_key(token),
            *(
                self._index_key(kind, value)
                for kind, value in (("sid", sid), ("sub", sub), ("client_id", client_id))
            ),
        ]
        args: list[str | int] = [self._ttl, repr(now), repr(now + self._ttl), family_id]
        args += [client_id, sub, sid, scope, jkt or ""]
        await idempotent(self._client, lambda: self._create(keys=keys, args=args))
        return token, family_id

    async def _family(self, family_id: str) -> RefreshFamily | None:
        raw = await idempotent(self._client, lambda: self._client.hgetall(self._family_key(family_id)))
        return _family(family_id, {_text(k): _text(v) for k, v in raw.items()})

    async def _peek(self, token: str) -> tuple[str, RefreshFamily | None] | None:
        """The family id a token names (None for an unknown token) and its family (None once expired)."""
        result = await idempotent(
            self._client, lambda: self._peek_script(keys=[self._token_key(token)], args=[self._prefix])
        )
        if not result:
            return None
        family_id = _text(result[0])
        return family_id, _family(family_id, _fields(result[1]))

    async def peek(self, token: str) -> RefreshFamily | None:
        found = await self._peek(token)
        family = None if found is None else found[1]
        return None if family is None or family.revoked else family

    async def spend(
        self, token: str, *, client_id: str, now: float, jkt: str | None = None
    ) -> tuple[RefreshFamily, str]:
        next_token = new_refresh_token()
        args: list[str | int] = [
            repr(now),
            repr(float(self._lifetimes.idle)),
            repr(float(self._lifetimes.absolute)),
            token_hash(next_token),
            client_id,
            self._prefix,
            self._ttl,
            jkt or "",
        ]
        result = await idempotent(self._client, lambda: self._spend(keys=[self._token_key(token)], args=args))
        outcome = _text(result[0])
        if outcome != "ok":
            raise reject(outcome)
        family = _family(_text(result[1]), _fields(result[2]))
        if family is None:  # cannot happen: the script read the family it just spent in
            raise reject("revoked")
        return family, next_token

    async def revoke(self, token: str) -> RefreshFamily | None:
        found = await self._peek(token)
        if found is None:
            return None
        family_id, family = found
        if family is not None:
            key = self._family_key(family_id)
            await idempotent(self._client, lambda: self._client.hset(key, "revoked", "1"))
        return family

    async def session_family(self, sid: str, client_id: str, now: float) -> RefreshFamily | None:
        async def read() -> list[Any]:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.zrangebyscore(self._index_key("sid", sid), f"({now!r}", "+inf")
                pipe.smembers(self._legacy_index_key("sid", sid))
                return await pipe.execute()

        indexed, legacy = await idempotent(self._client, read)
        for family_id in sorted({_text(m) for m in (*indexed, *legacy)}):
            family = await self._family(family_id)
            if family is not None and family.client_id == client_id and is_live(family, self._lifetimes, now):
                return family
        return None

    async def revoke_all(
        self, *, now: float, sid: str | None = None, sub: str | None = None, client_id: str | None = None
    ) -> int:
        kind, value = one_target(sid, sub, client_id)
        lifetimes = [repr(float(self._lifetimes.idle)), repr(float(self._lifetimes.absolute))]
        args = [self._prefix, repr(now), *lifetimes]
        keys = [self._index_key(kind, value), self._legacy_index_key(kind, value)]
        # Sent once: a second run would find the families revoked already and answer a wrong count.
        revoked = await exactly_once(self._client, lambda c: self._revoke_all(keys=keys, args=args, client=c))
        return int(revoked)

    async def ping(self) -> None:
        await idempotent(self._client, self._client.ping)
