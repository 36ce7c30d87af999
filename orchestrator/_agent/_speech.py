"""The fixed sentences the agent speaks, and bank errors turned into plain speakable sentences."""

from __future__ import annotations

from orchestrator._agent._pii import mask_text
from orchestrator._bank._protocol import AuthorizationLost, BankError, ServiceUnavailable, ToolRefused

__all__ = [
    "AUTHORIZATION_LOST",
    "CANNOT_VERIFY",
    "NOT_CONFIRMED",
    "SERVICE_UNAVAILABLE",
    "speakable_error",
]

CANNOT_VERIFY = "I'm sorry, I cannot verify who is calling, so I can't help with your accounts. Goodbye."
AUTHORIZATION_LOST = (
    "I'm sorry, I can no longer access your accounts on this call. "
    "Please hang up and start a new call if you need anything else."
)
NOT_CONFIRMED = (
    "I did not make that {noun}: it was not exactly what you confirmed, so no money moved. "
    "Please tell me again what you would like to do."
)
SERVICE_UNAVAILABLE = "I can't reach the bank right now. Please try again in a moment."
REFUSED = "The bank could not do that."


def speakable_error(err: BankError) -> str:
    """One plain sentence for the user; only a refusal's own message (masked) is passed on."""
    if isinstance(err, AuthorizationLost):
        return AUTHORIZATION_LOST
    if isinstance(err, ServiceUnavailable):
        return SERVICE_UNAVAILABLE
    if isinstance(err, ToolRefused):
        message = mask_text(str(err).strip(), spoken=True)
        return message or REFUSED
    return REFUSED
