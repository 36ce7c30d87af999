"""Per-call token manager: one rotating refresh token, cached access tokens, single-flight refreshes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from orchestrator._bank._movement import Movement
from orchestrator._bank._protocol import AuthorizationLost, BankError, ServiceUnavailable
from orchestrator._tokens._approval import poll_until_decided
from orchestrator._tokens._errors import IssuerRefused, SessionEnded
from orchestrator._tokens._issuer_client import BackchannelRequest, IssuerClient, TokenResponse
from orchestrator._tokens._retry import Sleep
from orchestrator._tokens._scopes import SINGLE_USE_SCOPES

__all__ = ["AccessToken", "TokenManager"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")


def _monotonic() -> float:
    # Looked up at call time so that freezegun's patched `time.monotonic` is seen.
    return time.monotonic()


@dataclass(frozen=True)
class AccessToken:
    """An access token and the scheme it is presented with: `DPoP` when bound to the call's key."""

    token: str = field(repr=False)
    scheme: str = "Bearer"


@dataclass(frozen=True)
class _Cached:
    access: AccessToken
    refresh_at: float  # refresh ahead from here on
    expires_at: float  # never hand it out from here on

    @property
    def token(self) -> str:
        return self.access.token


class TokenManager:
    """Access tokens for one voice session, from the session grant and then the rotating refresh token.

    Every refresh rotates the single refresh token, so all issuer calls are serialised under one lock:
    two concurrent refreshes would present the same refresh token twice, which the issuer treats as
    reuse and answers by revoking the family. `read` and `configure` tokens are cached and refreshed
    once `refresh_ratio` of their lifetime (from `expires_in`) has passed; a `transact` token is fetched
    fresh for every movement and bound to it (`transact_token`), and above the session's approval
    threshold the user approves the movement on their own device (`request_approval`, then
    `await_approval`, which polls without the lock). After `AuthorizationLost` every call raises it
    without contacting the issuer.
    """

    def __init__(
        self,
        issuer: IssuerClient,
        *,
        clock: Callable[[], float] = _monotonic,
        refresh_ratio: float = 0.8,
        expiry_margin: float = 5.0,
        failure_cooldown: float = 5.0,
        session_id: str | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._issuer = issuer
        self._clock = clock
        self._session_id = session_id  # the CIBA login_hint: the issuer finds the user by the session
        self._sleep = sleep
        self._refresh_ratio = refresh_ratio
        self._expiry_margin = expiry_margin  # covers the trip to the MCP server
        self._failure_cooldown = failure_cooldown  # no early refresh this long after a failed one
        self._lock = asyncio.Lock()
        self._refresh_token: str | None = None
        self._cache: dict[str, _Cached] = {}
        self._lost: AuthorizationLost | None = None
        self._quiet_until = float("-inf")
        self._started = False

    @property
    def lost(self) -> AuthorizationLost | None:
        """Why this session can no longer get tokens, or None while it can."""
        return self._lost

    async def start(self, session_grant: str, scope: str = "read") -> None:
        """Exchange the session grant once; keeps its refresh token and caches the access token."""
        async with self._lock:
            self._raise_if_lost()
            if self._started:
                raise RuntimeError("the session grant was already exchanged")
            sent = self._clock()
            # An unavailable issuer leaves the manager unstarted: the caller may try the exchange again.
            response = await self._call(self._issuer.exchange(session_grant, scope))
            self._started = True
            self._refresh_token = response.refresh_token
            if scope not in SINGLE_USE_SCOPES:
                self._store(scope, response, sent)

    async def get_token(self, scope: str) -> str:
        """An access token for exactly `scope` (`read`, `configure`), cached and refreshed ahead."""
        return (await self.get_access(scope)).token

    async def get_access(self, scope: str) -> AccessToken:
        """Like `get_token`, with the scheme the token is presented with."""
        if scope in SINGLE_USE_SCOPES:
            raise ValueError(f"a {scope} token is bound to one movement: use transact_token()")
        self._raise_if_lost()
        cached = self._cache.get(scope)
        now = self._clock()
        # Early refresh is someone else's job while one runs, and pointless just after one failed.
        if (
            cached is not None
            and now < cached.expires_at
            and (now < cached.refresh_at or self._lock.locked() or now < self._quiet_until)
        ):
            return cached.access
        async with self._lock:
            self._raise_if_lost()
            cached = self._cache.get(scope)
            if cached is not None and self._clock() < cached.refresh_at:
                return cached.access  # a caller ahead of us in the queue refreshed it
            try:
                return _access(await self._refresh(scope))
            except ServiceUnavailable:
                self._quiet_until = self._clock() + self._failure_cooldown
                if cached is not None and self._clock() < cached.expires_at:
                    log.info("refresh of %s failed; serving the cached token until it expires", scope)
                    return cached.access
                raise

    async def transact_token(self, movement: Movement) -> str:
        """A fresh single-use `transact` token bound to exactly `movement`.

        Raises `InteractionRequired` when the movement takes the session above its approval threshold
        (the refresh token is then unspent: the call goes on).
        """
        return (await self.transact_access(movement)).token

    async def transact_access(self, movement: Movement) -> AccessToken:
        """Like `transact_token`, with the scheme the token is presented with."""
        self._raise_if_lost()
        async with self._lock:
            self._raise_if_lost()
            return _access(await self._refresh("transact", movement.authorization_details()))

    async def request_approval(self, movement: Movement) -> BackchannelRequest:
        """Ask the user to approve `movement` in their banking app (OpenID CIBA `/bc-authorize`)."""
        if self._session_id is None:
            raise RuntimeError("approvals need the session id: pass session_id to the TokenManager")
        self._raise_if_lost()
        return await self._call(
            self._issuer.backchannel_authorize(
                self._session_id, movement.authorization_details(), movement.binding_message()
            )
        )

    async def await_approval(self, request: BackchannelRequest) -> AccessToken:
        """The approved movement's `transact` token; `ApprovalDeclined`, `ApprovalExpired` otherwise.

        Polls at the issuer's interval without holding the lock, so the call's other tools go on.
        """
        response = await self._call(
            poll_until_decided(
                self._issuer, request, sleep=self._sleep, clock=self._clock, check=self._raise_if_lost
            )
        )
        return _access(response)

    def invalidate(self, scope: str, token: str | None = None) -> None:
        """Forget the cached token of `scope` (the MCP server answered 401), unless already replaced."""
        cached = self._cache.get(scope)
        if cached is not None and (token is None or cached.token == token):
            del self._cache[scope]

    async def revoke(self) -> bool:
        """End the session: revoke the refresh family at the issuer; True once the issuer confirmed."""
        async with self._lock:
            token = self._refresh_token
            already_lost = self._lost is not None
            self._lose(SessionEnded())
            if token is None or already_lost:
                return True
            try:
                await self._issuer.revoke(token)
            except BankError as exc:
                # The family still dies on its own (idle timeout); the call is over either way.
                log.warning("revoking the refresh family failed: %s", exc.code)
                return False
            return True

    async def _refresh(self, scope: str, authorization_details: str | None = None) -> TokenResponse:
        """One refresh-token grant; the caller holds the lock."""
        if not self._started:
            raise RuntimeError("start() must exchange the session grant first")
        refresh_token = self._refresh_token
        if refresh_token is None:
            self._lose(IssuerRefused("no_refresh_token"))  # the exchange did not give us one
            raise IssuerRefused("no_refresh_token")
        sent = self._clock()
        response = await self._call(self._issuer.refresh(refresh_token, scope, authorization_details))
        if response.refresh_token is not None:
            self._refresh_token = response.refresh_token
        if scope not in SINGLE_USE_SCOPES:
            self._store(scope, response, sent)
        return response

    async def _call(self, request: Awaitable[_T]) -> _T:
        try:
            response = await request
        except AuthorizationLost as exc:
            self._lose(exc)
            raise
        return response

    def _store(self, scope: str, response: TokenResponse, sent: float) -> None:
        # Timed from when the request left, from `expires_in`: our clock never meets the token's `exp`.
        lifetime = response.expires_in
        self._cache[scope] = _Cached(
            _access(response),
            refresh_at=sent + self._refresh_ratio * lifetime,
            expires_at=sent + lifetime - min(self._expiry_margin, lifetime / 4),
        )

    def _lose(self, error: AuthorizationLost) -> None:
        if self._lost is None:
            self._lost = error
            log.warning("session authorization lost: %s", error.code)
        self._refresh_token = None
        self._cache.clear()

    def _raise_if_lost(self) -> None:
        if self._lost is not None:
            raise self._lost.with_traceback(None)  # one stored error, no growing traceback


def _access(response: TokenResponse) -> AccessToken:
    return AccessToken(response.access_token, response.token_type)
