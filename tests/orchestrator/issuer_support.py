"""The real issuer as the orchestrator tests run it: two registered clients and their keys."""

from __future__ import annotations

import json
from pathlib import Path

import keys
from issuer import IssuerSettings

ISSUER = "http://127.0.0.1:8000"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
CIBA = "urn:openid:params:grant-type:ciba"
CLIENT_KEYS = {name: keys.generate_key("ES256") for name in ("orchestrator", "backend")}


def issuer_settings(state: Path, resource: str = "http://127.0.0.1:8001/mcp") -> IssuerSettings:
    """Settings of an issuer with file keys in `state`, the orchestrator and backend clients registered."""
    clients = {
        "clients": [
            {
                "client_id": "orchestrator",
                "jwks": {"keys": [CLIENT_KEYS["orchestrator"].public_jwk()]},
                "grant_types": [TOKEN_EXCHANGE, "refresh_token", CIBA],
                "scope": "read transact configure",
            },
            {
                "client_id": "backend",
                "jwks": {"keys": [CLIENT_KEYS["backend"].public_jwk()]},
                "grant_types": ["client_credentials"],
                "scope": "sessions:create approvals:decide",
            },
        ]
    }
    (state / "clients.json").write_text(json.dumps(clients))
    return IssuerSettings(
        issuer_url=ISSUER,
        mcp_resource_url=resource,
        voicebank_state=state,
        issuer_clients_file=state / "clients.json",
        keys_store="file",
        redis_url=None,
        keys_passphrase=None,
        voicebank_mode="dev",
        livekit_url=None,
        livekit_api_key=None,
        livekit_api_secret=None,
    )
