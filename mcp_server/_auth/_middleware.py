"""Token auth in front of FastMCP: 401 for a bad token or proof, 403 per tool scope, single-use transact jti.

Credentials are `Authorization: Bearer <token>` or `Authorization: DPoP <token>` with a `DPoP` proof
(`_dpop.py` holds the DPoP rules). Challenges name the scheme the client used, DPoP ones with `algs`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keys import CLOCK_LEEWAY, KeysUnavailable, ReplayCache, ReplayUnavailable, TokenError
from mcp_server._audit import AuditLog
from mcp_server._auth._dpop import (
    BEARER,
    DPOP,
    DPoPRefusal,
    NonceRequired,
    ProofStoreDown,
    ResourceDPoP,
    WrongScheme,
)
from mcp_server._auth._principal import SCOPE_KEY, SPENT_KEY, InvalidPrincipal, Principal
from mcp_server._auth._scopes import TOOL_SCOPES, TRANSACT
from mcp_server._metrics import Metrics


class TokenVerifier(Protocol):
    """What the middleware needs from `keys.Verifier`."""

    async def verify_async(self, token: str) -> dict[str, Any]:
        """Verified claims, or a `keys.TokenError`."""
        ...


@dataclass(frozen=True, slots=True)
class _Denial:
    status: int
    challenge: str
    error: str | None
    reason: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


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
        dpop: ResourceDPoP,
        max_body_bytes: int = 1_048_576,
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self._paths:
            await self._app(scope, receive, send)
            return
        start = time.perf_counter()
        principal, tool, body, denial = await self._decide(scope, receive)
        if denial is not None or principal is None:
            denial = denial or self._invalid_token("invalid_token")
            await self._deny(send, denial)
            self._record(principal, tool, "denied", denial.reason, start)
            return
        scope[SCOPE_KEY] = principal
        nonce = await self._dpop.nonce()
        await self._app(scope, _replaying(body, receive), send if nonce is None else _with_nonce(send, nonce))

    async def _decide(
        self, scope: Scope, receive: Receive
    ) -> tuple[Principal | None, str | None, bytes, _Denial | None]:
        """Who calls, which tool, the request body, and whether to refuse."""
        credentials = _credentials(scope)
        if credentials is None:
            self._metrics.verifications.labels("rejected", "no_token").inc()
            scheme = DPOP if self._dpop.required else BEARER
            return None, None, b"", _Denial(401, self._challenge(scheme), None, "no_token")
        principal, denial = await self._authenticate(*credentials, scope)
        if principal is None:
            return None, None, b"", denial
        body, too_large = await _read_body(receive, self._max_body)
        if too_large:
            return principal, None, b"", _Denial(413, "", "invalid_request", "body_too_large")
        tool, spent, denial = await self._authorize(principal, body, scope["headers"], credentials[0])
        scope[SPENT_KEY] = spent
        return principal, tool, body, denial

    async def _authenticate(
        self, scheme: str, token: str, scope: Scope
    ) -> tuple[Principal | None, _Denial | None]:
        try:
            claims = await self._verifier.verify_async(token)
            principal = Principal.from_claims(claims)
        except (TokenError, KeysUnavailable, InvalidPrincipal) as exc:
            code = getattr(exc, "code", "invalid_token")
            self._metrics.verifications.labels("rejected", code).inc()
            return None, self._invalid_token(code, scheme)
        proofs = [value.decode("latin-1") for key, value in scope["headers"] if key == b"dpop"]
        try:
            await self._dpop.check(
                scheme=scheme,
                token=token,
                claims=claims,
                method=scope["method"],
                path=scope["path"],
                proofs=proofs,
            )
        except DPoPRefusal as refusal:
            self._metrics.verifications.labels("rejected", refusal.reason).inc()
            return None, self._refused(refusal, scheme)
        self._metrics.verifications.labels("ok", "ok").inc()
        return principal, None

    def _challenge(self, scheme: str, error: str | None = None, *extra: str) -> str:
        """An RFC 6750 / RFC 9449 §7.1 challenge; DPoP ones name the proof algorithms."""
        params = [f'error="{error}"'] if error else []
        params += extra
        if scheme == DPOP:
            params.append(self._dpop.algs_param)
        params.append(f'resource_metadata="{self._metadata}"')
        return f"{scheme} " + ", ".join(params)

    def _refused(self, refusal: DPoPRefusal, scheme: str) -> _Denial:
        if isinstance(refusal, ProofStoreDown):
            return _Denial(503, "", "temporarily_unavailable", refusal.reason)
        if isinstance(refusal, WrongScheme):
            # A bound token sent as Bearer, or DPoP demanded: tell the client to use DPoP.
            wanted = BEARER if refusal.reason == "dpop_unbound_token" else DPOP
            return self._invalid_token(refusal.reason, wanted)
        headers: tuple[tuple[bytes, bytes], ...] = ()
        if isinstance(refusal, NonceRequired):
            headers = ((b"dpop-nonce", refusal.nonce.encode("ascii")),)
        return _Denial(401, self._challenge(DPOP, refusal.error), refusal.error, refusal.reason, headers)

    async def _authorize(
        self, principal: Principal, body: bytes, scope_headers: list[tuple[bytes, bytes]], scheme: str
    ) -> tuple[str | None, bool, _Denial | None]:
        """400 for an unreadable body, 403 for a tool outside the token's scopes; spend a transact jti."""
        try:
            tools = _called_tools(body)
        except _UnreadableBody as exc:
            # Fail closed: a body this layer cannot read is not forwarded to a parser that might read it
            # differently (a scope check that saw no tool call must never let one through).
            return None, False, _Denial(400, "", "invalid_request", exc.reason)
        header_name = _header(scope_headers, b"mcp-name")
        if header_name is not None and tools and header_name not in tools:
            return None, False, _Denial(400, "", "invalid_request", "mcp_name_mismatch")
        spends = False
        for name in tools:
            needed = TOOL_SCOPES.get(name)
            if needed is None:
                continue  # FastMCP answers an unknown tool itself.
            if needed not in principal.scopes:
                challenge = self._challenge(scheme, "insufficient_scope", f'scope="{needed}"')
                return name, False, _Denial(403, challenge, "insufficient_scope", "insufficient_scope")
            spends = spends or needed == TRANSACT
        tool = tools[0] if tools else None
        if spends:
            try:
                # Remembered while the verifier could still accept the token: until exp plus the leeway.
                first = await self._replay.first_use(principal.jti, principal.exp + CLOCK_LEEWAY)
            except ReplayUnavailable as exc:
                return tool, False, _Denial(503, "", "temporarily_unavailable", exc.code)
            if not first:
                self._metrics.verifications.labels("rejected", "replayed").inc()
                return tool, False, self._invalid_token("replayed", scheme)
        return tool, spends, None

    def _invalid_token(self, reason: str, scheme: str = BEARER) -> _Denial:
        return _Denial(401, self._challenge(scheme, "invalid_token"), "invalid_token", reason)

    async def _deny(self, send: Send, denial: _Denial) -> None:
        body = {"error": denial.error or "unauthorized"}
        await _respond(send, denial.status, denial.challenge or None, body, denial.headers)

    def _record(
        self, principal: Principal | None, tool: str | None, outcome: str, reason: str, start: float
    ) -> None:
        elapsed_ms = (time.perf_counter() - start) * 1000
        self._audit.record(
            principal=principal, tool=tool, outcome=outcome, reason=reason, latency_ms=elapsed_ms
        )


_SCHEMES = {"bearer": BEARER, "dpop": DPOP}


def _credentials(scope: Scope) -> tuple[str, str] | None:
    """The scheme and token of the one Authorization header, or None (absent, repeated, other scheme)."""
    values = [v for k, v in scope["headers"] if k == b"authorization"]
    if len(values) != 1:
        return None
    scheme, _, rest = values[0].decode("latin-1").partition(" ")
    token = rest.strip()
    known = _SCHEMES.get(scheme.lower())
    if known is None or not token:
        return None
    return known, str(token)


def _with_nonce(send: Send, nonce: str) -> Send:
    """Every answer carries the current nonce, so a client talking once per window is never challenged."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"dpop-nonce", nonce.encode())]}
        await send(message)

    return sending


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), False


def _replaying(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _UnreadableBody(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    values = [v for k, v in headers if k == name]
    return values[0].decode("latin-1") if len(values) == 1 else None


def _called_tools(body: bytes) -> list[str]:
    """Names of the tools a JSON-RPC message (or batch) calls; `_UnreadableBody` for anything else."""
    if not body.strip():
        return []
    try:
        payload: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _UnreadableBody("malformed_body") from None
    messages = payload if isinstance(payload, list) else [payload]
    names: list[str] = []
    for message in messages:
        if isinstance(message, Mapping) and message.get("method") == "tools/call":
            params = message.get("params")
            name = params.get("name") if isinstance(params, Mapping) else None
            if not isinstance(name, str):
                raise _UnreadableBody("malformed_tool_call")
            names.append(name)
    return names


async def _respond(
    send: Send,
    status: int,
    challenge: str | None,
    body: Mapping[str, str],
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if challenge:
        headers.append((b"www-authenticate", challenge.encode("latin-1")))
    headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
