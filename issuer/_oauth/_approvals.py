"""Pending out-of-band approvals (OpenID CIBA poll mode): one request per payment above the threshold.

A request moves `pending` -> `approved` | `denied` (the user's app decides), and `approved` -> `issued`
(the one poll that gets the token). Every transition is one atomic step of the store, so two replicas
deciding or polling at once cannot both win. Requests expire `expires_in` after creation.

    poll outcome    answered as
    ------------    -----------
    unknown         invalid_grant    (no such request, or kept past its grace period)
    wrong_client    invalid_grant    (CIBA §11: issued to another client; nothing changes)
    issued          invalid_grant    (the token was already handed out: single use)
    expired         expired_token
    denied          access_denied
    slow_down       slow_down        (polled within the interval; the interval grows by 5 s)
    pending         authorization_pending
    approved        the token        (the request is now `issued`)
"""

from __future__ import annotations

import heapq
import threading
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from issuer._oauth._authorization_details import AuthorizationDetail

State = Literal["pending", "approved", "denied", "issued"]
PollOutcome = Literal[
    "unknown", "wrong_client", "issued", "expired", "denied", "slow_down", "pending", "approved"
]
DecideOutcome = Literal["unknown", "expired", "decided", "ok"]

APPROVAL_LIFETIME = 120
POLL_INTERVAL = 2
SLOW_DOWN_STEP = 5  # CIBA §11: a slow_down adds at least 5 s to the interval
GRACE = 120  # a request is kept this long past its expiry, so a late poll still hears expired_token
MAX_PENDING_PER_USER = 20


@dataclass(frozen=True)
class ApprovalRequest:
    """One payment waiting for (or past) the user's decision."""

    auth_req_id: str
    client_id: str
    user_id: str
    sid: str
    detail: AuthorizationDetail
    binding_message: str | None
    created_at: float
    expires_at: float
    interval: int = POLL_INTERVAL
    state: State = "pending"
    last_poll: float = 0.0
    """When the client last polled (creation counts as a poll: the first one is due after the interval)."""

    def view(self) -> dict[str, object]:
        """What the user's app backend sees in `GET /approvals`."""
        return {
            "auth_req_id": self.auth_req_id,
            "user_id": self.user_id,
            "sid": self.sid,
            "authorization_details": self.detail.claim(),
            "binding_message": self.binding_message,
            "expires_at": int(self.expires_at),
        }


class ApprovalStore(Protocol):
    """Where approval requests live; `decide` and `poll` are atomic across replicas."""

    async def create(self, request: ApprovalRequest, *, now: float) -> bool:
        """Store a new request; False when the user already has too many unexpired requests."""
        ...

    async def get(self, auth_req_id: str) -> ApprovalRequest | None: ...

    async def pending(self, user_id: str, *, now: float) -> list[ApprovalRequest]:
        """The user's undecided, unexpired requests, oldest first."""
        ...

    async def decide(self, auth_req_id: str, *, approve: bool, now: float) -> DecideOutcome:
        """Approve or deny a pending, unexpired request."""
        ...

    async def poll(
        self, auth_req_id: str, *, client_id: str, now: float
    ) -> tuple[PollOutcome, ApprovalRequest | None]:
        """One poll by `client_id`; with `approved` the request (now issued) comes back too."""
        ...


class MemoryApprovalStore:
    """Approval requests of one issuer process; a lock makes each transition one step.

    Like Redis (a TTL per request, a per-user index by expiry), no call scans every stored request: a heap
    by end of grace forgets old requests oldest-first, and a per-user index counts and lists one user's.
    """

    def __init__(self, *, max_requests: int = 100_000) -> None:
        self._requests: dict[str, ApprovalRequest] = {}
        self._by_user: dict[str, dict[str, None]] = {}  # user -> their auth_req_ids, oldest first
        self._ends: list[tuple[float, str]] = []  # heap of (end of grace, auth_req_id)
        self._max = max_requests
        self._lock = threading.Lock()

    def _forget(self, request: ApprovalRequest) -> None:
        del self._requests[request.auth_req_id]
        mine = self._by_user[request.user_id]
        del mine[request.auth_req_id]
        if not mine:
            del self._by_user[request.user_id]

    def _prune(self, now: float) -> None:
        ends = self._ends
        while ends and ends[0][0] <= now:
            _end, auth_req_id = heapq.heappop(ends)
            request = self._requests.get(auth_req_id)
            # A poll may have forgotten it already (a late poll past the grace period).
            if request is not None and request.expires_at + GRACE <= now:
                self._forget(request)

    def _mine(self, user_id: str) -> list[ApprovalRequest]:
        return [self._requests[i] for i in self._by_user.get(user_id, ())]

    async def create(self, request: ApprovalRequest, *, now: float) -> bool:
        with self._lock:
            self._prune(now)
            mine = sum(1 for r in self._mine(request.user_id) if r.expires_at > now)
            if mine >= MAX_PENDING_PER_USER or len(self._requests) >= self._max:
                return False
            previous = self._requests.get(request.auth_req_id)
            if previous is not None:  # ids are random; a repeated one replaces, as Redis's HSET does
                self._forget(previous)
            self._requests[request.auth_req_id] = replace(request, last_poll=request.created_at)
            self._by_user.setdefault(request.user_id, {})[request.auth_req_id] = None
            heapq.heappush(self._ends, (request.expires_at + GRACE, request.auth_req_id))
            return True

    async def get(self, auth_req_id: str) -> ApprovalRequest | None:
        return self._requests.get(auth_req_id)

    async def pending(self, user_id: str, *, now: float) -> list[ApprovalRequest]:
        with self._lock:
            mine = self._mine(user_id)
        found = [r for r in mine if r.state == "pending" and r.expires_at > now]
        return sorted(found, key=lambda r: (r.created_at, r.auth_req_id))

    async def decide(self, auth_req_id: str, *, approve: bool, now: float) -> DecideOutcome:
        with self._lock:
            request = self._requests.get(auth_req_id)
            if request is None:
                return "unknown"
            if now >= request.expires_at:
                return "expired"
            if request.state != "pending":
                return "decided"
            self._requests[auth_req_id] = replace(request, state="approved" if approve else "denied")
            return "ok"

    async def poll(
        self, auth_req_id: str, *, client_id: str, now: float
    ) -> tuple[PollOutcome, ApprovalRequest | None]:
        with self._lock:
            request = self._requests.get(auth_req_id)
            if request is not None and now >= request.expires_at + GRACE:
                self._forget(request)  # as Redis lets the key expire
                request = None
            if request is None:
                return "unknown", None
            if request.client_id != client_id:
                return "wrong_client", None
            if request.state == "issued":
                return "issued", None
            if now >= request.expires_at:
                return "expired", None
            if request.state == "denied":
                return "denied", None
            if request.state == "approved":
                issued = replace(request, state="issued", last_poll=now)
                self._requests[auth_req_id] = issued
                return "approved", issued
            if now - request.last_poll < request.interval:
                slower = replace(request, interval=request.interval + SLOW_DOWN_STEP, last_poll=now)
                self._requests[auth_req_id] = slower
                return "slow_down", None
            self._requests[auth_req_id] = replace(request, last_poll=now)
            return "pending", None
