"""Checks over HTTP: each configured URL reaches the service it names, and the services agree on names.

A wrong URL shows here as one line naming both values, rather than as `invalid_client` at a client
(the issuer checks a client assertion's audience against its own name) or as 401s at the MCP server.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from keys import KeyMaterialError, StaticKeys
from orchestrator._commands._doctor._report import Check, fail, ok

__all__ = ["IssuerView", "issuer_named", "issuer_view", "jwks_served", "mcp_server_agrees"]

ISSUER_METADATA = "/.well-known/oauth-authorization-server"
RESOURCE_METADATA = "/.well-known/oauth-protected-resource"


class IssuerView:
    """What the issuer at a URL says about itself (its RFC 8414 metadata), or why it could not be read."""

    def __init__(self, url: str, metadata: dict[str, Any] | None, problem: str | None) -> None:
        self.url = url
        self.metadata = metadata
        self.problem = problem

    @property
    def name(self) -> str | None:
        name = (self.metadata or {}).get("issuer")
        return name if isinstance(name, str) else None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


async def _get(http: httpx.AsyncClient, url: str) -> tuple[httpx.Response | None, str | None]:
    try:
        return await http.get(url), None
    except httpx.TransportError as exc:
        return None, f"nothing answers at {url} ({type(exc).__name__})"


async def issuer_view(http: httpx.AsyncClient, url: str) -> IssuerView:
    response, problem = await _get(http, url.rstrip("/") + ISSUER_METADATA)
    if response is None:
        return IssuerView(url, None, problem)
    metadata = _json(response)
    if response.status_code != 200 or not isinstance(metadata.get("issuer"), str):
        return IssuerView(url, None, f"{url} answers HTTP {response.status_code} without issuer metadata")
    return IssuerView(url, metadata, None)


def issuer_named(view: IssuerView, setting: str, consequence: str) -> Check:
    """The issuer reached at `setting`'s URL calls itself by that very URL (RFC 8414 §3.3)."""
    if view.problem is not None:
        return fail(setting, f"{view.problem}; is the issuer running?")
    if view.name != view.url:
        return fail(
            setting, f"{setting} is {view.url} but the issuer there calls itself {view.name}: {consequence}"
        )
    return ok(setting, f"{view.url} answers as that issuer")


async def jwks_served(http: httpx.AsyncClient, url: str) -> Check:
    """The JWKS the MCP server fetches answers with usable public keys."""
    response, problem = await _get(http, url)
    if response is None:
        return fail("jwks", f"{problem}: the MCP server cannot verify any token")
    if response.status_code != 200:
        return fail(
            "jwks", f"{url} answers HTTP {response.status_code}: the MCP server cannot verify any token"
        )
    try:
        kids = StaticKeys(_json(response)).kids
    except (KeyMaterialError, KeyError, TypeError, ValueError):
        kids = frozenset()
    if not kids:
        return fail("jwks", f"{url} holds no usable public key")
    return ok("jwks", f"{url} publishes {len(kids)} key{'s' if len(kids) != 1 else ''}")


def _resource_metadata_url(resource: str) -> str:
    parts = urlsplit(resource)
    return urlunsplit((parts.scheme, parts.netloc, RESOURCE_METADATA + parts.path.rstrip("/"), "", ""))


async def mcp_server_agrees(http: httpx.AsyncClient, *, mcp_url: str, resource: str, issuer: str) -> Check:
    """The MCP server the agent calls serves the resource the tokens are for, and trusts our issuer."""
    url = _resource_metadata_url(mcp_url)
    response, problem = await _get(http, url)
    if response is None:
        return fail("mcp server", f"{problem}; is `voicebank up` running?")
    metadata = _json(response)
    if response.status_code != 200 or "resource" not in metadata:
        return fail("mcp server", f"{url} answers HTTP {response.status_code} without resource metadata")
    served = metadata.get("resource")
    if served != resource:
        return fail(
            "mcp server",
            f"the MCP server at {mcp_url} is the resource {served}, but tokens are for MCP_RESOURCE_URL "
            f"{resource}: it would refuse them (wrong audience)",
        )
    trusted = metadata.get("authorization_servers")
    if trusted != [issuer]:
        named = ", ".join(map(str, trusted)) if isinstance(trusted, list) else "no issuer"
        return fail(
            "mcp server",
            f"the MCP server at {mcp_url} trusts {named}, not ISSUER_URL {issuer}: "
            "it would refuse every token",
        )
    return ok("mcp server", f"{mcp_url} serves {resource} and trusts {issuer}")
