"""Why the MCP endpoint refuses a request, and the one place each refusal becomes an HTTP answer.

    Denial (an McpServerError)   code                     HTTP
     ├── OriginNotAllowed        origin_not_allowed       403 invalid_origin
     ├── NoCredentials           no_credentials           401, a challenge without an error code
     ├── MalformedCredentials    malformed_credentials    400 invalid_request (RFC 6750 §3.1)
     ├── InvalidToken            invalid_token            401 invalid_token
     ├── BodyTooLarge            body_too_large           413 invalid_request
     ├── MalformedRequest        malformed_request        400 invalid_request
     ├── InsufficientScope       insufficient_scope       403 insufficient_scope
     └── TemporarilyUnavailable  temporarily_unavailable  503 temporarily_unavailable, Retry-After

Each denial also carries its precise `reason` (the verifier's code, `lone_surrogate`, `replayed`, ...). A
client learns the status, the error code and the challenge; the reason goes to the audit log and metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mcp_server._errors import McpServerError

# Seconds a client should wait after a 503: the JWKS is retried at least this often while it is missing.
RETRY_AFTER_SECONDS = 2


class Denial(McpServerError):
    """A refused request; `reason` is for the audit log and metrics only."""

    code = "denied"
    status = 400
    error: str | None = "invalid_request"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OriginNotAllowed(Denial):
    code = "origin_not_allowed"
    status = 403
    error = "invalid_origin"


class NoCredentials(Denial):
    code = "no_credentials"
    status = 401
    error = None


class MalformedCredentials(Denial):
    code = "malformed_credentials"


class InvalidToken(Denial):
    code = "invalid_token"
    status = 401
    error = "invalid_token"


class BodyTooLarge(Denial):
    code = "body_too_large"
    status = 413


class MalformedRequest(Denial):
    code = "malformed_request"


class InsufficientScope(Denial):
    code = "insufficient_scope"
    status = 403
    error = "insufficient_scope"

    def __init__(self, scope: str) -> None:
        super().__init__("insufficient_scope")
        self.scope = scope


class TemporarilyUnavailable(Denial):
    code = "temporarily_unavailable"
    status = 503
    error = "temporarily_unavailable"


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status, headers and a JSON body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def answer(denial: Denial, resource_metadata: str) -> Answer:
    """The HTTP answer to a denial: RFC 6750 challenges for credential problems, a JSON error always."""
    challenge: str | None = None
    metadata = f'resource_metadata="{resource_metadata}"'
    if isinstance(denial, NoCredentials):
        challenge = f"Bearer {metadata}"
    elif isinstance(denial, MalformedCredentials | InvalidToken):
        challenge = f'Bearer error="{denial.error}", {metadata}'
    elif isinstance(denial, InsufficientScope):
        challenge = f'Bearer error="insufficient_scope", scope="{denial.scope}", {metadata}'
    payload = json.dumps({"error": denial.error or "unauthorized"}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if challenge is not None:
        headers.append((b"www-authenticate", challenge.encode("latin-1")))
    if isinstance(denial, TemporarilyUnavailable):
        headers.append((b"retry-after", str(RETRY_AFTER_SECONDS).encode()))
    return Answer(denial.status, headers, payload)
