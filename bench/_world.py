"""The voicebank parts a benchmark needs: client keys, an issuer state directory, a seeded bank, sessions."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

import keys
from keys import assertion_form
from mcp_server import create_schema, make_engine, seed
from orchestrator import IssuerClient, RetryPolicy

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a grant type
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
CIBA = "urn:openid:params:grant-type:ciba"
CLIENTS = {
    "orchestrator": ([TOKEN_EXCHANGE, "refresh_token", CIBA], "read transact configure"),
    "backend": (["client_credentials"], "sessions:create approvals:decide"),
    "admin": (["client_credentials"], "keys:admin"),
}


def client_keys() -> dict[str, keys.KeyPair]:
    return {client_id: keys.generate_key("ES256") for client_id in CLIENTS}


def write_issuer_state(directory: Path, client_keys: dict[str, keys.KeyPair]) -> Path:
    """A state directory the issuer starts from: the client registry (the key ring bootstraps itself)."""
    directory.mkdir(parents=True, exist_ok=True)
    clients = [
        {
            "client_id": client_id,
            "jwks": {"keys": [client_keys[client_id].public_jwk()]},
            "grant_types": grants,
            "scope": scope,
        }
        for client_id, (grants, scope) in CLIENTS.items()
    ]
    (directory / "clients.json").write_text(json.dumps({"clients": clients}))
    return directory


def seeded_bank(path: Path) -> Path:
    """A SQLite bank with the demo users."""
    engine = make_engine(f"sqlite:///{path}")
    create_schema(engine)
    seed(engine)
    engine.dispose()
    return path


def auth(client_keys: dict[str, keys.KeyPair], client_id: str, issuer: str, now: float) -> dict[str, str]:
    return assertion_form(client_id, client_keys[client_id], f"{issuer}/token", now)


async def bearer(
    http: httpx.AsyncClient,
    issuer: str,
    client_keys: dict[str, keys.KeyPair],
    client_id: str,
    scope: str,
    now: float | None = None,
) -> str:
    """A client-credentials token for the issuer's own endpoints."""
    form = {"grant_type": "client_credentials", "scope": scope}
    stamp = time.time() if now is None else now
    answer = await http.post(f"{issuer}/token", data=form | auth(client_keys, client_id, issuer, stamp))
    answer.raise_for_status()
    token: str = answer.json()["access_token"]
    return token


async def open_session(
    http: httpx.AsyncClient,
    issuer: str,
    client_keys: dict[str, keys.KeyPair],
    *,
    user: str = "alice",
    scope: str = "read transact configure",
    now: float | None = None,
) -> tuple[str, str]:
    """What the user's app backend does: `POST /sessions`, answering the session id and its grant."""
    token = await bearer(http, issuer, client_keys, "backend", "sessions:create", now)
    created = await http.post(
        f"{issuer}/sessions",
        json={"user_id": user, "scope": scope},
        headers={"Authorization": f"Bearer {token}"},
    )
    created.raise_for_status()
    return str(created.json()["session_id"]), str(created.json()["session_grant"])


async def session_grant(
    http: httpx.AsyncClient,
    issuer: str,
    client_keys: dict[str, keys.KeyPair],
    *,
    user: str = "alice",
    scope: str = "read transact configure",
    now: float | None = None,
) -> str:
    """The session grant of a new session (`open_session`)."""
    return (await open_session(http, issuer, client_keys, user=user, scope=scope, now=now))[1]


def orchestrator_client(
    http: httpx.AsyncClient, issuer: str, client_keys: dict[str, keys.KeyPair], **kwargs: object
) -> IssuerClient:
    """The orchestrator's real issuer client."""
    return IssuerClient(
        http,
        issuer=issuer,
        client_id="orchestrator",
        key=client_keys["orchestrator"],
        retry=RetryPolicy(attempts=2),
        **kwargs,  # type: ignore[arg-type]
    )
