"""RFC 9728 protected resource metadata of the MCP endpoint."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import JSONResponse

from mcp_server._auth._scopes import SUPPORTED_SCOPES

WELL_KNOWN = "/.well-known/oauth-protected-resource"


def resource_path(resource_url: str) -> str:
    """The path the MCP endpoint is served at ("/mcp" by default)."""
    return urlsplit(resource_url).path.rstrip("/") or "/mcp"


def metadata_url(resource_url: str) -> str:
    """The path-suffixed metadata URL of a resource (RFC 9728 §3.1), advertised in challenges."""
    parts = urlsplit(resource_url)
    return urlunsplit((parts.scheme, parts.netloc, WELL_KNOWN + parts.path.rstrip("/"), "", ""))


class ResourceMetadata:
    """Serves the metadata document."""

    def __init__(
        self, *, resource_url: str, issuer_url: str, dpop_required: bool, dpop_algorithms: list[str]
    ) -> None:
        self.document: dict[str, Any] = {
            "resource": resource_url,
            "authorization_servers": [issuer_url],
            "scopes_supported": list(SUPPORTED_SCOPES),
            "bearer_methods_supported": ["header"],
            "resource_name": "voicebank banking tools",
            # RFC 9728 §2 / SEP-1932: whether only DPoP-bound tokens are taken, and the proof algorithms.
            "dpop_bound_access_tokens_required": dpop_required,
            "dpop_signing_alg_values_supported": dpop_algorithms,
        }

    async def endpoint(self, _request: Request) -> JSONResponse:
        """`GET /.well-known/oauth-protected-resource[/mcp]`."""
        return JSONResponse(self.document, headers={"cache-control": "public, max-age=3600"})
