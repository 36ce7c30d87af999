"""The audit log: one JSON line per authorization decision or tool outcome, never a token."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable

from opentelemetry import trace

from keys import log_line
from mcp_server._auth._principal import Principal

AUDIT_LOGGER = "voicebank.audit"
SERVICE = "mcp"
# One encoder for every line (`json.dumps` with options builds a new one per call); ASCII, as json.dumps.
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


def current_trace_id() -> str | None:
    """The W3C trace id (32 hex digits) the request runs under, or None outside a trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


class AuditLog:
    """Writes decisions to the `voicebank.audit` logger."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, logger: logging.Logger | None = None
    ) -> None:
        self._clock = clock
        self._logger = logger or logging.getLogger(AUDIT_LOGGER)

    def record(
        self,
        *,
        principal: Principal | None,
        tool: str | None,
        outcome: str,
        reason: str | None,
        latency_ms: float,
    ) -> None:
        """Log one decision; the principal may be unknown when the token was refused."""
        entry = {
            "time": dt.datetime.fromtimestamp(self._clock(), dt.UTC).isoformat(),
            "service": SERVICE,
            "sub": principal.sub if principal else None,
            "client_id": principal.client_id if principal else None,
            "act": principal.act if principal else None,
            "sid": principal.sid if principal else None,
            "jti": principal.jti if principal else None,
            "tool": tool,
            "outcome": outcome,
            "reason": reason,
            "latency_ms": round(latency_ms, 3),
            "trace_id": current_trace_id(),
        }
        # Written before the request's answer, as every audit line (keys.log_line: the cheap way when only
        # our one handler would see it).
        log_line(self._logger, logging.INFO, _ENCODE(entry))
