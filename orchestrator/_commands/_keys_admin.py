"""`voicebank keys list|rotate|retire|revoke` and `voicebank sessions revoke`: the admin client over HTTP."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from keys import KeyMaterialError, assertion_form, client_key_path, load_client_key
from orchestrator._errors import OrchestratorError

ADMIN_CLIENT = "admin"
REVOKE_SCOPE = "sessions:revoke"
_COLUMNS = ("kid", "alg", "state", "created_at", "activated_at", "retiring_at", "revoked_at")


class AdminCommandError(OrchestratorError):
    """A `voicebank keys` or `sessions` command failed; the message is one line for the terminal."""

    code = "admin_command"


def _when(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return datetime.datetime.fromtimestamp(value, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def key_table(keys: Sequence[dict[str, Any]]) -> str:
    """The admin view of the ring as an aligned text table."""
    rows = [[h.upper().removesuffix("_AT") for h in _COLUMNS]]
    for key in keys:
        rows.append([str(key.get("kid", "")), str(key.get("alg", "")), str(key.get("state", ""))])
        rows[-1] += [_when(key.get(name)) for name in _COLUMNS[3:]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _refusal(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{body['error']}: {body.get('error_description', '')}".rstrip(": ")
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


async def _admin_token(
    http: httpx.AsyncClient, issuer_url: str, state: Path, now: float, scope: str = "keys:admin"
) -> str:
    try:
        key = load_client_key(state, ADMIN_CLIENT)
    except (OSError, KeyMaterialError):
        path = client_key_path(state, ADMIN_CLIENT)
        raise AdminCommandError(f"no usable admin key at {path} (run `voicebank dev-init`)") from None
    form = {
        "grant_type": "client_credentials",
        "scope": scope,
        **assertion_form(ADMIN_CLIENT, key, issuer_url.rstrip("/") + "/token", now),
    }
    response = await http.post("/token", data=form)
    if response.status_code != 200:
        raise AdminCommandError(f"the issuer refused the admin client: {_refusal(response)}")
    token: str = response.json()["access_token"]
    return token


async def keys_command(
    action: str,
    *,
    issuer_url: str,
    state: Path,
    kid: str | None = None,
    alg: str | None = None,
    force: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
) -> str:
    """Run one admin action against the issuer and return the key table to print."""
    try:
        async with httpx.AsyncClient(base_url=issuer_url, transport=transport, timeout=10.0) as http:
            headers = {"Authorization": f"Bearer {await _admin_token(http, issuer_url, state, clock())}"}
            if action == "list":
                response = await http.get("/admin/keys", headers=headers)
            elif action == "rotate":
                body: dict[str, Any] = {"force": force} | ({"alg": alg} if alg else {})
                response = await http.post("/admin/keys/rotate", json=body, headers=headers)
            elif action == "retire" and alg:
                response = await http.post("/admin/keys/retire", json={"alg": alg}, headers=headers)
            elif action == "revoke" and kid:
                response = await http.post(f"/admin/keys/{kid}/revoke", headers=headers)
            else:
                raise AdminCommandError(f"unknown keys action {action!r}")
    except httpx.TransportError as exc:
        raise _unreachable(issuer_url, exc) from None
    if response.status_code != 200:
        raise AdminCommandError(f"the issuer refused: {_refusal(response)}")
    return key_table(response.json()["keys"])


def _unreachable(issuer_url: str, exc: Exception) -> AdminCommandError:
    return AdminCommandError(
        f"cannot reach the issuer at {issuer_url} ({type(exc).__name__}); is `voicebank up` running?"
    )


async def revoke_sessions(
    target: dict[str, str],
    *,
    issuer_url: str,
    state: Path,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
) -> str:
    """`POST /admin/revocations` with one of sid, sub, client_id; the line to print."""
    try:
        async with httpx.AsyncClient(base_url=issuer_url, transport=transport, timeout=10.0) as http:
            token = await _admin_token(http, issuer_url, state, clock(), REVOKE_SCOPE)
            headers = {"Authorization": f"Bearer {token}"}
            response = await http.post("/admin/revocations", json=target, headers=headers)
    except httpx.TransportError as exc:
        raise _unreachable(issuer_url, exc) from None
    if response.status_code != 200:
        raise AdminCommandError(f"the issuer refused: {_refusal(response)}")
    count = response.json()["revoked_families"]
    ((name, value),) = target.items()
    return f"revoked {count} refresh-token {'family' if count == 1 else 'families'} of {name} {value}"
