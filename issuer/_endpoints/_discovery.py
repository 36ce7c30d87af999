"""Discovery documents: the JWKS (cacheable, with a strong ETag) and RFC 8414 metadata."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from issuer._oauth._authorization_details import TYPES as DETAIL_TYPES
from issuer._oauth._clients import GRANT_CIBA
from issuer._oauth._scope import ISSUER_SCOPES, RESOURCE_SCOPES
from issuer._settings import IssuerSettings
from keys import ALGORITHMS, DPOP_ALGORITHMS, KeyRing

JWKS_PATH = "/.well-known/jwks.json"
METADATA_PATH = "/.well-known/oauth-authorization-server"


def jwks_document(ring: KeyRing) -> tuple[bytes, str]:
    """The JWKS body and its strong ETag (a hash of the exact bytes served)."""
    body = json.dumps(ring.jwks(), separators=(",", ":"), sort_keys=True).encode()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2: weak comparison, a list of tags, or `*`."""
    if not if_none_match:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return any(tag == "*" or tag.removeprefix("W/") == etag for tag in tags)


def metadata(settings: IssuerSettings) -> dict[str, Any]:
    base = settings.issuer_url.rstrip("/")
    algs = list(ALGORITHMS)
    return {
        "issuer": settings.issuer_url,
        "token_endpoint": settings.token_endpoint,
        "jwks_uri": base + JWKS_PATH,
        "revocation_endpoint": base + "/revoke",
        "scopes_supported": sorted(RESOURCE_SCOPES | ISSUER_SCOPES),
        "response_types_supported": [],
        "grant_types_supported": [
            "urn:ietf:params:oauth:grant-type:token-exchange",
            "refresh_token",
            "client_credentials",
            GRANT_CIBA,
        ],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": algs,
        "revocation_endpoint_auth_methods_supported": ["private_key_jwt"],
        "revocation_endpoint_auth_signing_alg_values_supported": algs,
        "authorization_details_types_supported": list(DETAIL_TYPES),
        "backchannel_authentication_endpoint": base + "/bc-authorize",
        "backchannel_token_delivery_modes_supported": ["poll"],
        "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),
    }
