"""The issuer's audit log: one JSON object per decision on the `voicebank.audit` logger, never a token.

Every line has the same members (docs/architecture.md "Audit, tracing and metrics"), null when unknown:
`time, service, event, client_id, sub, sid, scope, jti, kid, exp, family, outcome, reason, trace_id`.
`jti`, `kid` and `exp` name what was issued (a token's id, never the token); `family` is a refresh-token
family id, never a refresh token. `outcome` is `ok`, `refused` (the client's request was turned down,
`reason` says why) or `error` (the issuer could not decide: a store was down).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from opentelemetry import trace

from issuer._signing._mint import Minted
from keys import log_line

AUDIT_LOGGER = "voicebank.audit"
SERVICE = "issuer"
# A refresh token presented a second time, or by a client it was not issued to: someone holds a copy.
THEFT_REASONS = frozenset({"refresh_reused", "refresh_wrong_client"})
# ensure_ascii: client-chosen text (ids, reasons) never reaches the log as raw control characters.
# One encoder for every line (`json.dumps` with options builds a new one per call).
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


def encode_line(entry: dict[str, Any]) -> str:
    """`entry` as `_ENCODE` writes it: compact JSON, every character outside printable ASCII escaped.

    orjson writes the same bytes ten times faster while every character is printable ASCII (it escapes
    control characters as json does, and sorts nothing); it leaves DEL and non-ASCII raw, so a line
    holding either, or a lone surrogate orjson refuses, is written by `json` instead.
    """
    try:
        line = orjson.dumps(entry)
    except orjson.JSONEncodeError:  # a lone surrogate (a JSON escape in a client's text): json escapes it
        return _ENCODE(entry)
    if line.isascii() and b"\x7f" not in line:
        return line.decode("ascii")
    return _ENCODE(entry)


def current_trace_id() -> str | None:
    """The W3C trace id (32 hex digits) the caller runs under, or None outside a trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


@dataclass
class Decision:
    """What one request is about, filled in as the endpoint learns it; written once by `IssuerAudit`."""

    event: str
    client_id: str | None = None
    sub: str | None = None
    sid: str | None = None
    scope: str | None = None
    jti: str | None = None
    kid: str | None = None
    exp: int | None = None
    family: str | None = None
    reason: str | None = None
    """A note on an `ok` outcome (a refusal's reason comes from its error)."""

    def issued(self, minted: Minted) -> None:
        """Name the token just signed (its id, key and expiry; never the token)."""
        self.jti, self.kid, self.exp = minted.jti, minted.kid, minted.exp


class IssuerAudit:
    """Writes the audit lines of docs/architecture.md; every field is always present (null when unknown)."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, logger: logging.Logger | None = None
    ) -> None:
        self._clock = clock
        self._logger = logger or logging.getLogger(AUDIT_LOGGER)

    def decided(self, decision: Decision, *, outcome: str = "ok", reason: str | None = None) -> None:
        """Write `decision`; a theft signal (refresh-token reuse) at WARNING."""
        level = logging.WARNING if reason in THEFT_REASONS else logging.INFO
        entry = {
            "time": dt.datetime.fromtimestamp(self._clock(), dt.UTC).isoformat(),
            "service": SERVICE,
            "event": decision.event,
            "client_id": decision.client_id,
            "sub": decision.sub,
            "sid": decision.sid,
            "scope": decision.scope,
            "jti": decision.jti,
            "kid": decision.kid,
            "exp": decision.exp,
            "family": decision.family,
            "outcome": outcome,
            "reason": reason or decision.reason,
            "trace_id": current_trace_id(),
        }
        # Written before the request's answer, as every audit line (keys.log_line: the cheap way when only
        # our one handler would see it).
        log_line(self._logger, level, encode_line(entry))
