"""Movements waiting for the user's approval in their banking app: background waits, told when decided.

A movement above the session's approval threshold is not made in the tool call that asked for it: the
user approves it on their own device, which can take a minute. The wait runs as a task of its own, so
the conversation goes on meanwhile, and the outcome is said to the caller when it arrives. Hanging up
cancels every wait (`ApprovalWaits.cancel`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from orchestrator._agent._speech import AUTHORIZATION_LOST, speakable_error
from orchestrator._bank._protocol import (
    ApprovalDeclined,
    ApprovalExpired,
    AuthorizationLost,
    BankError,
    PendingApproval,
)

__all__ = ["ApprovalWaits", "waiting_sentence"]

log = logging.getLogger(__name__)


def _capitalized(phrase: str) -> str:
    return phrase[:1].upper() + phrase[1:]


def waiting_sentence(phrase: str) -> str:
    """What the caller hears when a movement goes to their banking app for approval."""
    return (
        f"{_capitalized(phrase)} needs your approval in your banking app. Please approve it there; "
        "I'll tell you as soon as it's done, and we can carry on meanwhile."
    )


def outcome_sentence(phrase: str, error: BankError | None) -> str:
    """What the caller hears when the decision arrives: approved and made, declined, expired, or failed."""
    if error is None:
        return f"You approved {phrase} in your banking app, and it has been made."
    if isinstance(error, AuthorizationLost):
        return AUTHORIZATION_LOST
    if isinstance(error, ApprovalDeclined):
        return f"You declined {phrase} in your banking app, so no money moved."
    if isinstance(error, ApprovalExpired):
        return f"The approval request for {phrase} expired before you approved it, so no money moved."
    return f"{_capitalized(phrase)} was not made: {speakable_error(error)}"


class ApprovalWaits:
    """The call's background waits for out-of-band approvals."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def start(
        self,
        approval: PendingApproval,
        phrase: str,
        *,
        tell: Callable[[str], Awaitable[None]],
        made: Callable[[dict[str, Any]], None],
        lost: Callable[[], None],
    ) -> None:
        """Wait for `approval` in the background; `tell` says the outcome (until it is said), `made` gets
        the tool's result."""

        async def wait() -> None:
            try:
                result = await approval.outcome()
            except BankError as error:
                log.info("approval wait ended: %s", error.code)
                if isinstance(error, AuthorizationLost):
                    lost()
                await tell(outcome_sentence(phrase, error))
                return
            made(result)
            await tell(outcome_sentence(phrase, None))

        task = asyncio.create_task(wait(), name="voicebank-approval-wait")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settled(self) -> None:
        """Until every wait has ended (tests and the demo wait on this; the agent never does)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def cancel(self) -> None:
        """End every wait now: the call is over, nobody is left to tell."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
