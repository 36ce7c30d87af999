"""`voicebank token`: an access token for trying a generic MCP client, in development mode only.

It runs the flow the product runs, with the clients `dev-init` registered: the app backend opens a
session for the user (`POST /sessions`), the orchestrator exchanges the session grant and takes an access
token for the scope with the refresh-token grant, then revokes the refresh family, so that nothing but the
short-lived access token outlives the command.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

from keys import KeyMaterialError, KeyPair, assertion_form, client_key_path, load_client_key
from orchestrator._bank._protocol import BankError, ServiceUnavailable
from orchestrator._errors import OrchestratorError
from orchestrator._tokens._issuer_client import IssuerClient
from orchestrator._tokens._retry import RetryPolicy

__all__ = ["TOKEN_SCOPES", "IssuedToken", "TokenCommandError", "TokenSettings", "mint_token"]

BACKEND_CLIENT = "backend"
TOKEN_SCOPES = ("read", "configure")
"""`transact` tokens are bound to one payment (authorization details) and single-use: no generic client."""


class TokenCommandError(OrchestratorError):
    """`voicebank token` could not get a token; the message is one line for the terminal."""

    code = "token_command"


class TokenSettings(BaseSettings):
    """What `voicebank token` reads: the mode, the issuer, the state directory with the clients' keys."""

    model_config = SettingsConfigDict(
        use_attribute_docstrings=True, case_sensitive=False, extra="ignore", frozen=True
    )

    voicebank_mode: Literal["dev", "prod"] = "dev"
    """`voicebank token` runs only in `dev` mode."""
    issuer_url: str = "http://127.0.0.1:8000"
    """The issuer to get the token from (`--issuer` wins)."""
    voicebank_state: Path = Path("./var")
    """The state directory with the dev clients' keys (`--state` wins)."""
    orchestrator_client_id: str = "orchestrator"
    """The client that exchanges the session grant."""


@dataclass(frozen=True)
class IssuedToken:
    """The access token and what to say about it; the token stays out of `repr`."""

    access_token: str = field(repr=False)
    user: str
    scope: str
    session_id: str
    expires_in: float


def _key(state: Path, client_id: str) -> KeyPair:
    try:
        return load_client_key(state, client_id)
    except (OSError, KeyMaterialError):
        path = client_key_path(state, client_id)
        raise TokenCommandError(f"no usable {client_id} key at {path} (run `voicebank dev-init`)") from None


def _refusal(who: str, response: httpx.Response) -> TokenCommandError:
    try:
        body = response.json()
        reason = f"{body['error']}: {body.get('error_description', '')}".rstrip(": ")
    except (ValueError, KeyError, TypeError):
        reason = f"HTTP {response.status_code}"
    return TokenCommandError(f"the issuer refused {who}: {reason}")


async def _open_session(
    http: httpx.AsyncClient, issuer_url: str, key: KeyPair, user: str, scope: str, now: float
) -> dict[str, Any]:
    """The app backend's part: a bearer for `/sessions`, then the session and its grant."""
    form = {
        "grant_type": "client_credentials",
        "scope": "sessions:create",
        **assertion_form(BACKEND_CLIENT, key, f"{issuer_url}/token", now),
    }
    response = await http.post(f"{issuer_url}/token", data=form)
    if response.status_code != 200:
        raise _refusal("the backend client", response)
    bearer = response.json()["access_token"]
    created = await http.post(
        f"{issuer_url}/sessions",
        json={"user_id": user, "scope": scope},
        headers={"Authorization": f"Bearer {bearer}"},
    )
    if created.status_code != 201:
        raise _refusal(f"a session for {user!r}", created)
    session: dict[str, Any] = created.json()
    return session


async def mint_token(
    settings: TokenSettings,
    *,
    user: str,
    scope: str,
    issuer_url: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
) -> IssuedToken:
    """An access token of `scope` for `user`, through session, exchange and refresh."""
    if settings.voicebank_mode != "dev":
        raise TokenCommandError("token is for development only, and VOICEBANK_MODE is prod")
    if scope not in TOKEN_SCOPES:
        raise TokenCommandError(f"scope must be one of {', '.join(TOKEN_SCOPES)}")
    issuer_url = (issuer_url or settings.issuer_url).rstrip("/")
    state = settings.voicebank_state
    backend_key = _key(state, BACKEND_CLIENT)
    agent_key = _key(state, settings.orchestrator_client_id)
    try:
        async with httpx.AsyncClient(transport=transport, timeout=10.0) as http:
            session = await _open_session(http, issuer_url, backend_key, user, scope, clock())
            agent = IssuerClient(
                http,
                issuer=issuer_url,
                client_id=settings.orchestrator_client_id,
                key=agent_key,
                retry=RetryPolicy(attempts=1),
                clock=clock,
            )
            exchanged = await agent.exchange(session["session_grant"], scope)
            if exchanged.refresh_token is None:
                raise TokenCommandError("the issuer gave the orchestrator no refresh token")
            refreshed = await agent.refresh(exchanged.refresh_token, scope)
            await agent.revoke(refreshed.refresh_token or exchanged.refresh_token)
    except (httpx.TransportError, ServiceUnavailable):
        raise TokenCommandError(
            f"cannot reach the issuer at {issuer_url}; is `voicebank up` running?"
        ) from None
    except BankError as exc:
        detail = getattr(exc, "error", exc.code)
        raise TokenCommandError(f"the issuer refused the orchestrator client: {detail}") from None
    return IssuedToken(
        refreshed.access_token, user, refreshed.scope, session["session_id"], refreshed.expires_in
    )
