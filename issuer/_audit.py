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

    def record(
        self,
        event: str,
        *,
        outcome: str,
        reason: str | None = None,
        client_id: str | None = None,
        sub: str | None = None,
        sid: str | None = None,
        scope: str | None = None,
        jti: str | None = None,
        kid: str | None = None,
        exp: int | None = None,
        family: str | None = None,
        trace_id: str | None = None,
        level: int = logging.INFO,
    ) -> None:
        """Log one decision: `event` names the step, `outcome` is ok or the refusal, `reason` the cause."""
        entry = {
            "time": dt.datetime.fromtimestamp(self._clock(), dt.UTC).isoformat(),
            "service": SERVICE,
            "event": event,
            "client_id": client_id,
            "sub": sub,
            "sid": sid,
            "scope": scope,
            "jti": jti,
            "kid": kid,
            "exp": exp,
            "family": family,
            "outcome": outcome,
            "reason": reason,
            "trace_id": trace_id or current_trace_id(),
        }
        # Written before the request's answer, as every audit line (keys.log_line: the cheap way when only
        # our one handler would see it).
        log_line(self._logger, level, _ENCODE(entry))

    def decided(self, decision: Decision, *, outcome: str = "ok", reason: str | None = None) -> None:
        """Write `decision`; a theft signal (refresh-token reuse) at WARNING."""
        level = logging.WARNING if reason in THEFT_REASONS else logging.INFO
        # Its fields are strings, ints and None: a shallow copy is `asdict` without the deep copying.
        fields = dict(vars(decision))
        event, note = fields.pop("event"), fields.pop("reason")
        self.record(event, outcome=outcome, reason=reason or note, level=level, **fields)
