"""Rotating refresh tokens: opaque, stored by SHA-256 hash, grouped in families; reuse revokes the family."""

from __future__ import annotations

import hashlib
import secrets
from collections import deque
from dataclasses import dataclass, replace
from typing import Protocol

from issuer._oauth._errors import InvalidDPoPProof, InvalidGrant


def new_refresh_token() -> str:
    """256 random bits, base64url."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class RefreshLifetimes:
    idle: float = 1800
    absolute: float = 43200


@dataclass(frozen=True)
class RefreshFamily:
    """What every refresh token of one family grants; immutable except for use times and revocation."""

    family_id: str
    client_id: str
    sub: str
    sid: str
    scope: str
    created_at: float
    last_used: float
    revoked: bool = False
    jkt: str | None = None  # the DPoP key every request of the family must prove (RFC 9449 §5)


def is_live(family: RefreshFamily, lifetimes: RefreshLifetimes, now: float) -> bool:
    """Neither revoked nor past its idle or absolute lifetime."""
    return (
        not family.revoked
        and now - family.created_at <= lifetimes.absolute
        and now - family.last_used <= lifetimes.idle
    )


# A spend by another key than the family's changes nothing: a thief without the key cannot end the family.
WRONG_KEY = "wrong_key"


def reject(reason: str) -> InvalidGrant | InvalidDPoPProof:
    """The one client-facing answer for every refusal: the reason only goes to logs and metrics."""
    if reason == WRONG_KEY:
        return InvalidDPoPProof(
            "the DPoP proof is not signed by the key this refresh token is bound to",
            reason="dpop_family_wrong_key",
        )
    return InvalidGrant("the refresh token is invalid, expired or revoked", reason=f"refresh_{reason}")


class RefreshStore(Protocol):
    """Refresh-token families; `spend` is atomic: of concurrent spends of one token exactly one wins."""

    async def create(
        self, *, client_id: str, sub: str, sid: str, scope: str, now: float, jkt: str | None = None
    ) -> str:
        """A new family's first refresh token (`create_family` without the id), shared by every store."""
        token, _ = await self.create_family(
            client_id=client_id, sub=sub, sid=sid, scope=scope, now=now, jkt=jkt
        )
        return token

    async def create_family(
        self, *, client_id: str, sub: str, sid: str, scope: str, now: float, jkt: str | None = None
    ) -> tuple[str, str]:
        """A new family's first refresh token and the family's id (what `create` and a `peek` would say)."""
        ...

    async def peek(self, token: str) -> RefreshFamily | None:
        """The live family of a token (spent or not), or None; never changes state."""
        ...

    async def spend(
        self, token: str, *, client_id: str, now: float, jkt: str | None = None
    ) -> tuple[RefreshFamily, str]:
        """Spend the token and return its family and the next token; raise InvalidGrant otherwise.

        `jkt` is the key the request proved; a family bound to another key is refused, unchanged.
        """
        ...

    async def revoke(self, token: str) -> RefreshFamily | None:
        """Revoke the token's whole family; the family it was, or None when the token is unknown."""
        ...

    async def session_family(self, sid: str, client_id: str, now: float) -> RefreshFamily | None:
        """The live (unrevoked, unexpired) family of session `sid` held by `client_id`, or None."""
        ...

    async def revoke_all(
        self, *, now: float, sid: str | None = None, sub: str | None = None, client_id: str | None = None
    ) -> int:
        """Revoke every family of one session, user or client (exactly one is given); how many were live."""
        ...

    async def ping(self) -> None: ...


def one_target(sid: str | None, sub: str | None, client_id: str | None) -> tuple[str, str]:
    """The one (kind, value) an operator revocation names; ValueError unless exactly one is given."""
    given = [(kind, value) for kind, value in (("sid", sid), ("sub", sub), ("client_id", client_id)) if value]
    if len(given) != 1:
        raise ValueError("exactly one of sid, sub and client_id")
    return given[0]


class MemoryRefreshStore(RefreshStore):
    """Refresh families in process memory (one issuer process, `REDIS_URL` unset).

    Families are forgotten past their absolute lifetime, oldest first: `_created` keeps them in the order
    they were made, so each creation pops only what died (no scan of every family on every request).
    """

    def __init__(self, lifetimes: RefreshLifetimes) -> None:
        self._lifetimes = lifetimes
        self._tokens: dict[str, tuple[str, bool]] = {}  # hash -> (family id, spent)
        self._families: dict[str, RefreshFamily] = {}
        self._family_tokens: dict[str, list[str]] = {}  # family id -> the hashes of its tokens
        self._created: deque[tuple[float, str]] = deque()  # (created_at, family id), oldest first
        self._by_sid: dict[str, set[str]] = {}  # sid -> family ids

    def _prune(self, now: float) -> None:
        while self._created and now - self._created[0][0] > self._lifetimes.absolute:
            _, family_id = self._created.popleft()
            family = self._families.pop(family_id, None)
            if family is not None:
                session = self._by_sid.get(family.sid, set())
                session.discard(family_id)
                if not session:
                    self._by_sid.pop(family.sid, None)
            for digest in self._family_tokens.pop(family_id, ()):
                self._tokens.pop(digest, None)

    def _remember(self, digest: str, family_id: str, *, spent: bool) -> None:
        self._tokens[digest] = (family_id, spent)
        self._family_tokens[family_id].append(digest)

    async def create_family(
        self, *, client_id: str, sub: str, sid: str, scope: str, now: float, jkt: str | None = None
    ) -> tuple[str, str]:
        self._prune(now)
        family_id = secrets.token_urlsafe(16)
        self._families[family_id] = RefreshFamily(family_id, client_id, sub, sid, scope, now, now, jkt=jkt)
        self._family_tokens[family_id] = []
        self._created.append((now, family_id))
        self._by_sid.setdefault(sid, set()).add(family_id)
        token = new_refresh_token()
        self._remember(token_hash(token), family_id, spent=False)
        return token, family_id

    async def peek(self, token: str) -> RefreshFamily | None:
        entry = self._tokens.get(token_hash(token))
        if entry is None:
            return None
        family = self._families.get(entry[0])
        return None if family is None or family.revoked else family

    def _revoke_family(self, family_id: str) -> None:
        family = self._families.get(family_id)
        if family is not None:
            self._families[family_id] = replace(family, revoked=True)

    async def spend(
        self, token: str, *, client_id: str, now: float, jkt: str | None = None
    ) -> tuple[RefreshFamily, str]:
        # No await below: the whole check-and-spend runs without yielding, so it is atomic.
        digest = token_hash(token)
        entry = self._tokens.get(digest)
        if entry is None:
            raise reject("unknown")
        family_id, spent = entry
        family = self._families.get(family_id)
        if family is None or family.revoked:
            raise reject("revoked")
        if family.client_id != client_id:
            self._revoke_family(family_id)
            raise reject("wrong_client")
        if family.jkt is not None and family.jkt != jkt:
            raise reject(WRONG_KEY)
        if spent:
            self._revoke_family(family_id)
            raise reject("reused")
        if now - family.created_at > self._lifetimes.absolute:
            self._revoke_family(family_id)
            raise reject("expired_absolute")
        if now - family.last_used > self._lifetimes.idle:
            self._revoke_family(family_id)
            raise reject("expired_idle")
        self._tokens[digest] = (family_id, True)
        next_token = new_refresh_token()
        self._remember(token_hash(next_token), family_id, spent=False)
        family = replace(family, last_used=now)
        self._families[family_id] = family
        return family, next_token

    async def revoke(self, token: str) -> RefreshFamily | None:
        entry = self._tokens.get(token_hash(token))
        if entry is None:
            return None
        family = self._families.get(entry[0])
        self._revoke_family(entry[0])
        return family

    async def session_family(self, sid: str, client_id: str, now: float) -> RefreshFamily | None:
        for family_id in sorted(self._by_sid.get(sid, ())):
            family = self._families.get(family_id)
            if family is not None and family.client_id == client_id and is_live(family, self._lifetimes, now):
                return family
        return None

    async def revoke_all(
        self, *, now: float, sid: str | None = None, sub: str | None = None, client_id: str | None = None
    ) -> int:
        kind, value = one_target(sid, sub, client_id)
        # An operator's emergency measure over one process's families: a scan is fine here.
        revoked = 0
        for family in list(self._families.values()):
            if family.revoked or getattr(family, kind) != value:
                continue
            self._revoke_family(family.family_id)
            absolute_ok = now - family.created_at <= self._lifetimes.absolute
            if absolute_ok and now - family.last_used <= self._lifetimes.idle:
                revoked += 1
        return revoked

    async def ping(self) -> None:
        return None
