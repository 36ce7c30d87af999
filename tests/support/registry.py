"""The client registry file (`ISSUER_CLIENTS_FILE`) the issuer tests and stacks register their clients in."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keys import KeyPair

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
CIBA = "urn:openid:params:grant-type:ciba"
ALL_SCOPES = "read transact configure"
# client id -> (grant types, scope) of the clients tests register.
CLIENTS: Mapping[str, tuple[list[str], str]] = {
    "orchestrator": ([TOKEN_EXCHANGE, "refresh_token", CIBA], ALL_SCOPES),
    "backend": (["client_credentials"], "sessions:create approvals:decide"),
    "admin": (["client_credentials"], "keys:admin sessions:revoke"),
    # A second agent-like client, to prove grants, refresh tokens and approvals are bound to their client.
    "other": ([TOKEN_EXCHANGE, "refresh_token", CIBA], "read transact"),
}


def client_entry(client_id: str, key: KeyPair, grants: list[str], scope: str) -> dict[str, Any]:
    """One registered client with its public key inline."""
    return {
        "client_id": client_id,
        "jwks": {"keys": [key.public_jwk()]},
        "grant_types": grants,
        "scope": scope,
    }


def client_registry(keys: Mapping[str, KeyPair]) -> dict[str, Any]:
    """The registry of the clients in `keys`, each with the grants and scope of `CLIENTS`."""
    return {"clients": [client_entry(cid, key, *CLIENTS[cid]) for cid, key in keys.items()]}


def write_client_registry(path: Path, keys: Mapping[str, KeyPair]) -> Path:
    path.write_text(json.dumps(client_registry(keys)))
    return path
