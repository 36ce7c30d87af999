"""Why the MCP endpoint refuses a request, and the one place each refusal becomes an HTTP answer.

    Denial (an McpServerError)   code                     HTTP
     ├── OriginNotAllowed        origin_not_allowed       403 invalid_origin
     ├── NoCredentials           no_credentials           401, a challenge without an error code
     ├── MalformedCredentials    malformed_credentials    400 invalid_request (RFC 6750 §3.1)
     ├── InvalidToken            invalid_token            401 invalid_token
     ├── BodyTooLarge            body_too_large           413 invalid_request
     ├── MalformedRequest        malformed_request        400 invalid_request
     ├── InsufficientScope       insufficient_scope       403 insufficient_scope
     ├── TemporarilyUnavailable  temporarily_unavailable  503 temporarily_unavailable, Retry-After
     ├── BindingMismatch         insufficient_authorization_details  403 (`_binding.py`)
     └── DPoPRefusal             dpop_refused             401 DPoP challenges, 503 (`_dpop.py`)

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
    """A refused request; `reason` is for the audit log and metrics only.

    `challenge`: the answer carries `WWW-Authenticate` (a credential problem); `challenge_scheme` names the
    scheme it must use when that is not simply the client's own; `headers` go on the answer as they are.
    """

    code = "denied"
    status = 400
    error: str | None = "invalid_request"
    challenge = False
    challenge_scheme: str | None = None

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.headers: list[tuple[bytes, bytes]] = []


class OriginNotAllowed(Denial):
    code = "origin_not_allowed"
    status = 403
    error = "invalid_origin"


class NoCredentials(Denial):
    code = "no_credentials"
    status = 401
    error = None
    challenge = True


class MalformedCredentials(Denial):
    code = "malformed_credentials"
    challenge = True


class InvalidToken(Denial):
    code = "invalid_token"
    status = 401
    error = "invalid_token"
    challenge = True


class BodyTooLarge(Denial):
    code = "body_too_large"
    status = 413


class MalformedRequest(Denial):
    code = "malformed_request"


class InsufficientScope(Denial):
    code = "insufficient_scope"
    status = 403
    error = "insufficient_scope"
    challenge = True

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


def answer(denial: Denial, *, scheme: str, resource_metadata: str, dpop_algs: str) -> Answer:
    """The HTTP answer to a denial: an RFC 6750 / RFC 9449 §7.1 challenge for credential problems, in the
    scheme `scheme` (the client's, or the one it must use), and a JSON error always.

    `dpop_algs` is the `algs="..."` parameter every DPoP challenge carries.
    """
    scheme = denial.challenge_scheme or scheme
    params = [f'error="{denial.error}"'] if denial.challenge and denial.error else []
    if isinstance(denial, InsufficientScope):
        params.append(f'scope="{denial.scope}"')
    if scheme == "DPoP":
        params.append(dpop_algs)
    params.append(f'resource_metadata="{resource_metadata}"')
    payload = json.dumps({"error": denial.error or "unauthorized"}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if denial.challenge:
        headers.append((b"www-authenticate", f"{scheme} {', '.join(params)}".encode("latin-1")))
    headers += denial.headers
    if denial.status == 503:
        headers.append((b"retry-after", str(RETRY_AFTER_SECONDS).encode()))
    return Answer(denial.status, headers, payload)
