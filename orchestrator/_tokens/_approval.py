"""Waiting for the user's out-of-band approval: poll the CIBA grant at the issuer's interval."""

from __future__ import annotations

import logging
from collections.abc import Callable

from orchestrator._bank._protocol import ApprovalExpired, ServiceUnavailable
from orchestrator._tokens._errors import ApprovalPending, SlowDown
from orchestrator._tokens._issuer_client import BackchannelRequest, IssuerClient, TokenResponse
from orchestrator._tokens._retry import Sleep

__all__ = ["SLOW_DOWN_STEP", "poll_until_decided"]

log = logging.getLogger(__name__)

SLOW_DOWN_STEP = 5.0  # OpenID CIBA §11: after slow_down, poll at least 5 s more slowly from then on


async def poll_until_decided(
    issuer: IssuerClient,
    request: BackchannelRequest,
    *,
    sleep: Sleep,
    clock: Callable[[], float],
    check: Callable[[], None],
) -> TokenResponse:
    """The approved `transact` token; `ApprovalDeclined` or `ApprovalExpired` when there will be none.

    The first poll waits one interval (the issuer counts the request itself as the first); `check` runs
    before each poll and raises when the call has lost its authorization (the caller hung up).
    """
    interval = request.interval
    # The issuer answers expired_token first; this bounds the wait if it never answers at all.
    deadline = clock() + request.expires_in + interval
    while True:
        await sleep(interval)
        check()
        try:
            return await issuer.poll(request.auth_req_id)
        except ApprovalPending:
            pass
        except SlowDown:
            interval += SLOW_DOWN_STEP
        except ServiceUnavailable:
            log.info("approval poll failed: the issuer is unavailable; polling on")
        if clock() >= deadline:
            raise ApprovalExpired()
