"""The audit log: one JSON line per authorization decision or tool outcome, never a token."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable

from mcp_server._auth._principal import Principal

AUDIT_LOGGER = "voicebank.audit"


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
            "sub": principal.sub if principal else None,
            "client_id": principal.client_id if principal else None,
            "act": principal.act if principal else None,
            "sid": principal.sid if principal else None,
            "jti": principal.jti if principal else None,
            "tool": tool,
            "outcome": outcome,
            "reason": reason,
            "latency_ms": round(latency_ms, 3),
        }
        self._logger.info(json.dumps(entry, separators=(",", ":")))
