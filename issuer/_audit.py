"""The issuer's audit log: one JSON object per decision on the `voicebank.audit` logger, never a token."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable

AUDIT_LOGGER = "voicebank.audit"
SERVICE = "issuer"


class IssuerAudit:
    """Writes DESIGN "Operations" audit lines; every field is always present (null when unknown)."""

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
            "trace_id": trace_id,
        }
        # ensure_ascii: client-chosen text (ids, reasons) never reaches the log as raw control characters.
        self._logger.log(level, json.dumps(entry, separators=(",", ":"), ensure_ascii=True))
