"""Token auth in front of FastMCP: who calls, with which scopes, for which tool; a transact jti spent once.

A `transact` call must also be the one movement its token's authorization details name (`_binding.py`),
checked after the scope and before the `jti` is spent, so a refused call leaves the token usable.

Credentials are `Authorization: Bearer <token>` or `Authorization: DPoP <token>` with a `DPoP` proof
(`_dpop.py` holds the DPoP rules). Each step of `_admit` either returns or raises a `Denial`; `__call__`
turns a denial into the HTTP answer (`_denials.answer`: challenges name the scheme the client used, DPoP
ones with `algs`), the audit line and the metrics, in one place.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keys import CLOCK_LEEWAY, KeysUnavailable, ReplayCache, ReplayUnavailable, TokenError
from mcp_server._audit import AuditLog
from mcp_server._auth._binding import (
    MOVEMENT_TOOLS,
    BindingMismatch,
    CurrencyUnavailable,
    check_call,
    check_currency,
)
from mcp_server._auth._denials import (
    BodyTooLarge,
    Denial,
    InsufficientScope,
    InvalidToken,
    MalformedCredentials,
    MalformedRequest,
    NoCredentials,
    OriginNotAllowed,
    TemporarilyUnavailable,
    answer,
)
from mcp_server._auth._dpop import BEARER, DPOP, DPoPRefusal, ResourceDPoP
from mcp_server._auth._principal import SCOPE_KEY, SPENT_KEY, InvalidPrincipal, Principal
from mcp_server._auth._rpc_body import ToolCall, called_tools
from mcp_server._auth._scopes import TOOL_SCOPES, TRANSACT
from mcp_server._auth._transport_refusals import watch_refusals
from mcp_server._metrics import Metrics

Headers = list[tuple[bytes, bytes]]
_SCHEMES = {"bearer": BEARER, "dpop": DPOP}
# The request headers auth reads, gathered in one pass over the request's headers.
_READ = (b"origin", b"authorization", b"dpop", b"content-length", b"mcp-name")

CurrencyLookup = Callable[[str, str], Awaitable[str | None]]
"""The currency of a user's account (`sub`, account id), None when the user has no such account;
`CurrencyUnavailable` when the bank cannot answer."""


class TokenVerifier(Protocol):
    """What the middleware needs from `keys.Verifier`."""

    async def verify_async(self, token: str) -> dict[str, Any]:
        """Verified claims; a `keys.TokenError` for a bad token, `keys.KeysUnavailable` in an outage."""
        ...


@dataclass(slots=True)
class _Seen:
    """What the answer and the audit line of this request can say: filled in as the checks pass."""

    scheme: str
    principal: Principal | None = None
    tool: str | None = None
    spent: bool = False


class BearerAuthMiddleware:
    """Guards one MCP path; every other path passes through untouched."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        verifier: TokenVerifier,
        replay: ReplayCache,
        resource_metadata_url: str,
        audit: AuditLog,
        metrics: Metrics,
        currency_of: CurrencyLookup,
        dpop: ResourceDPoP,
        max_body_bytes: int = 64 * 1024,
        allowed_origins: Collection[str] = (),
    ) -> None:
        self._app = app
        self._dpop = dpop
        self._paths = {path.rstrip("/") or "/", path.rstrip("/") + "/"}
        self._verifier = verifier
        self._replay = replay
        self._metadata = resource_metadata_url
        self._audit = audit
        self._metrics = metrics
        self._max_body = max_body_bytes
        self._origins = frozenset(allowed_origins)
        self._currency_of = currency_of
        self._verified_ok = metrics.verifications.labels("ok", "ok")  # one child lookup, not one per call

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self._paths:
            await self._app(scope, receive, send)
            return
        start = time.perf_counter()
        # Until the client names its scheme, a challenge names the one this resource wants.
        seen = _Seen(DPOP if self._dpop.required else BEARER)
        try:
            body = await self._admit(scope, receive, seen)
        except Denial as denial:
            if isinstance(denial, NoCredentials | MalformedCredentials | InvalidToken | DPoPRefusal):
                self._metrics.verifications.labels("rejected", denial.reason).inc()
            reply = answer(
                denial, scheme=seen.scheme, resource_metadata=self._metadata, dpop_algs=self._dpop.algs_param
            )
            await send({"type": "http.response.start", "status": reply.status, "headers": reply.headers})
            await send({"type": "http.response.body", "body": reply.body})
            self._record(seen, "denied", denial.reason, start)
            return
        scope[SCOPE_KEY] = seen.principal
        scope[SPENT_KEY] = seen.spent

        def transport_refused(reason: str) -> None:
            self._record(seen, "refused", reason, start)

        answering = watch_refusals(send, transport_refused)
        nonce = await self._dpop.nonce()
        await self._app(
            scope, _replaying(body, receive), answering if nonce is None else _with_nonce(answering, nonce)
        )

    def _record(self, seen: _Seen, outcome: str, reason: str, start: float) -> None:
        elapsed_ms = (time.perf_counter() - start) * 1000
        self._audit.record(
            principal=seen.principal, tool=seen.tool, outcome=outcome, reason=reason, latency_ms=elapsed_ms
        )

    async def _admit(self, scope: Scope, receive: Receive, seen: _Seen) -> bytes:
        """The request body once every check passed; a `Denial` at the first that fails."""
        headers = _read_headers(scope["headers"])
        self._check_origin(headers[b"origin"])
        seen.scheme, token = _credentials(headers[b"authorization"], scope.get("query_string", b""))
        seen.principal = principal = await self._authenticate(seen.scheme, token, scope, headers[b"dpop"])
        body = await _read_body(receive, self._max_body, _single(headers[b"content-length"]))
        calls = called_tools(body)
        tools = [call.name for call in calls]
        # Only a known tool name goes to the audit log: any other is client text of any length.
        seen.tool = next((name for name in tools if name in TOOL_SCOPES), None)
        if tools and (name := _single(headers[b"mcp-name"])) is not None and name not in tools:
            raise MalformedRequest("mcp_name_mismatch")
        if self._authorize(principal, tools):
            await self._check_movement(principal, calls)
            await self._spend(principal)
            seen.spent = True
        return body

    def _check_origin(self, origins: list[bytes]) -> None:
        """A browser's request from a site not listed is refused (DNS rebinding); no Origin, no browser."""
        if origins and (len(origins) > 1 or origins[0].decode("latin-1").lower() not in self._origins):
            raise OriginNotAllowed("origin_not_allowed")

    async def _authenticate(self, scheme: str, token: str, scope: Scope, dpop: list[bytes]) -> Principal:
        """The caller of a valid token whose DPoP proof (when bound) holds; `DPoPRefusal`s pass through."""
        try:
            claims = await self._verifier.verify_async(token)
            principal = Principal.from_claims(claims)
        except KeysUnavailable as exc:
            # An outage, not a bad token: a 401 would make the client drop a good token and refresh.
            self._metrics.verifications.labels("unavailable", exc.code).inc()
            raise TemporarilyUnavailable(exc.code) from None
        except (TokenError, InvalidPrincipal) as exc:
            raise InvalidToken(exc.code) from None
        proofs = [value.decode("latin-1") for value in dpop]
        await self._dpop.check(
            scheme=scheme,
            token=token,
            claims=claims,
            method=scope["method"],
            path=scope["path"],
            proofs=proofs,
        )
        self._verified_ok.inc()
        return principal

    @staticmethod
    def _authorize(principal: Principal, tools: list[str]) -> bool:
        """Whether the call moves money (its transact jti must be spent); 403 for a scope the token lacks."""
        spends = False
        for name in tools:
            needed = TOOL_SCOPES.get(name)
            if needed is None:
                continue  # FastMCP answers an unknown tool itself.
            if needed not in principal.scopes:
                raise InsufficientScope(needed)
            spends = spends or needed == TRANSACT
        return spends

    async def _check_movement(self, principal: Principal, calls: list[ToolCall]) -> None:
        """The request's one money movement is the one the token authorizes; `BindingMismatch` otherwise."""
        movements = [call for call in calls if call.name in MOVEMENT_TOOLS]
        if len(movements) != 1:
            # One token, one movement: a batch cannot spend one authorization twice.
            raise BindingMismatch("details_several_movements" if movements else "details_no_movement")
        (call,) = movements
        movement = check_call(principal.movement, call.name, call.arguments)
        try:
            currency = await self._currency_of(principal.sub, movement.from_account_id)
        except CurrencyUnavailable as exc:
            # Fail closed, and as an outage: the call was not judged, so the token stays usable.
            raise TemporarilyUnavailable(exc.code) from None
        check_currency(movement, currency)

    async def _spend(self, principal: Principal) -> None:
        try:
            # Remembered while the verifier could still accept the token: until exp plus the leeway.
            first = await self._replay.first_use(principal.jti, principal.exp + CLOCK_LEEWAY)
        except ReplayUnavailable as exc:
            raise TemporarilyUnavailable(exc.code) from None
        if not first:
            raise InvalidToken("replayed")


def _read_headers(headers: Headers) -> dict[bytes, list[bytes]]:
    """The values of each header in `_READ`, in order (ASGI names are lowercase); every other one skipped."""
    found: dict[bytes, list[bytes]] = {name: [] for name in _READ}
    for key, value in headers:
        if key in found:
            found[key].append(value)
    return found


def _credentials(values: list[bytes], query: bytes) -> tuple[str, str]:
    """The scheme and token of the one `Authorization` header (RFC 6750 §2.1, RFC 9449 §7), or the denial."""
    # RFC 6750 §2.3 (a token in the URL, which ends up in logs) is not offered: alone it is no credential,
    # beside a header it is two methods in one request (RFC 6750 §2), a malformed request.
    in_query = b"access_token" in query and "access_token" in dict(parse_qsl(query.decode("latin-1")))
    if not values:
        raise NoCredentials("token_in_query" if in_query else "no_token")
    if len(values) > 1:
        raise MalformedCredentials("repeated_authorization")
    if in_query:
        raise MalformedCredentials("two_token_methods")
    scheme, _, rest = values[0].decode("latin-1").strip().partition(" ")
    known = _SCHEMES.get(scheme.lower())
    if known is None:
        raise NoCredentials("other_scheme")
    token: str = rest.strip(" ")
    if not token or " " in token or "\t" in token:
        raise MalformedCredentials("malformed_credentials")
    return known, token


def _single(values: list[bytes]) -> str | None:
    """A header sent once; None when it is absent or repeated."""
    return values[0].decode("latin-1") if len(values) == 1 else None


async def _read_body(receive: Receive, limit: int, declared: str | None) -> bytes:
    # A declared length over the cap is refused before a byte is read (the length test first: no int() of
    # thousands of digits).
    digits = declared is not None and declared.isascii() and declared.isdigit()
    if digits and declared is not None and (len(declared) > len(str(limit)) or int(declared) > limit):
        raise BodyTooLarge("body_too_large")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge("body_too_large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _with_nonce(send: Send, nonce: str) -> Send:
    """Every answer carries the current nonce, so a client talking once per window is never challenged."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"dpop-nonce", nonce.encode())]}
        await send(message)

    return sending


def _replaying(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
