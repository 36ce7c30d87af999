"""`voicebank dev-init`: a state directory with a passphrase, the issuer key ring and three clients."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

from issuer import (
    GRANT_CIBA,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_REFRESH,
    GRANT_TOKEN_EXCHANGE,
    IssuerSettings,
    key_store,
)
from keys import (
    KeyMaterialError,
    KeyPair,
    KeyRingError,
    KeyStoreUnavailable,
    client_key_path,
    generate_key,
    write_private_file,
)
from orchestrator._errors import OrchestratorError

# client id -> (grant types, scope): docs/architecture.md "Clients".
DEV_CLIENTS: dict[str, tuple[list[str], str]] = {
    "orchestrator": ([GRANT_TOKEN_EXCHANGE, GRANT_REFRESH, GRANT_CIBA], "read transact configure"),
    "backend": ([GRANT_CLIENT_CREDENTIALS], "sessions:create approvals:decide"),
    "admin": ([GRANT_CLIENT_CREDENTIALS], "keys:admin sessions:revoke"),
}


class DevInitError(OrchestratorError):
    """dev-init could not finish; the message says what to do."""

    code = "dev_init"


class BankSettings(BaseSettings):
    """The one bank setting dev-init needs to seed the database."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True, extra="ignore")

    bank_db_url: str | None = None
    """The bank database to seed; unset: SQLite at `$VOICEBANK_STATE/bank.db`."""


def _passphrase(settings: IssuerSettings, force: bool, out: Callable[[str], None]) -> None:
    if settings.keys_passphrase is not None and settings.keys_passphrase.get_secret_value():
        out("passphrase: using KEYS_PASSPHRASE")
        return
    path = settings.voicebank_state / "passphrase"
    if path.is_file() and not force:
        out(f"passphrase: kept {path}")
        return
    write_private_file(path, secrets.token_urlsafe(32).encode() + b"\n")
    out(f"passphrase: created {path} (0600)")


def _client_key(state: Path, client_id: str, force: bool, out: Callable[[str], None]) -> KeyPair:
    path = client_key_path(state, client_id)
    if path.is_file() and not force:
        try:
            key = KeyPair.from_pem(path.read_bytes(), None)
        except KeyMaterialError as exc:
            raise DevInitError(f"{path} is not a usable key ({exc}); rerun with --force") from None
        out(f"client {client_id}: kept {path}")
        return key
    key = generate_key("ES256")
    write_private_file(path, key.private_pem(None))
    out(f"client {client_id}: created {path} (0600)")
    return key


def _write_registry(
    path: Path, keys: dict[str, KeyPair], dpop_bound: frozenset[str], out: Callable[[str], None]
) -> None:
    others: list[dict[str, Any]] = []
    if path.is_file():
        try:
            existing = json.loads(path.read_text())
            others = [c for c in existing.get("clients", []) if c.get("client_id") not in DEV_CLIENTS]
        except (ValueError, AttributeError):
            others = []  # an unreadable registry is replaced: the dev clients are what matters here
    # Unbound by default, so that a generic MCP client can be tried with a bearer token in development.
    clients = [
        {
            "client_id": cid,
            "jwks": {"keys": [keys[cid].public_jwk()]},
            "grant_types": grants,
            "scope": scope,
            "dpop_bound_access_tokens": cid in dpop_bound,
        }
        for cid, (grants, scope) in DEV_CLIENTS.items()
    ]
    write_private_file(path, (json.dumps({"clients": clients + others}, indent=2) + "\n").encode())
    bound = f" ({', '.join(sorted(dpop_bound))} DPoP-bound)" if dpop_bound else ""
    out(f"clients: registered {', '.join(DEV_CLIENTS)} in {path}{bound}")


def _seed(settings: IssuerSettings, bank_db_url: str | None, out: Callable[[str], None]) -> None:
    from mcp_server import seed_bank  # FastMCP loads only when dev-init runs, not for every command

    # The command line passes nothing: BANK_DB_URL comes from the environment, as the MCP server reads it.
    bank_db_url = bank_db_url or BankSettings().bank_db_url
    url = bank_db_url or f"sqlite:///{(settings.voicebank_state / 'bank.db').resolve()}"
    created = seed_bank(url)
    out(f"bank: {'seeded' if created else 'already seeded'} ({url.split('://', 1)[0]})")


def dev_init(
    settings: IssuerSettings,
    *,
    force: bool = False,
    dpop_bound: frozenset[str] = frozenset(),
    bank_only: bool = False,
    bank_db_url: str | None = None,
    out: Callable[[str], None] = print,
    clock: Callable[[], float] = time.time,
) -> None:
    """Create (or complete) a development state directory; existing keys are kept unless `force`.

    The directory is 0700 and every file written in it 0600 (keys, clients, passphrase, the bank).
    `bank_only` seeds the bank and makes no key: a deployment whose keys are made outside it.
    `dpop_bound` names the clients registered with `dpop_bound_access_tokens: true` (compose.yaml: the agent).
    """
    unknown = dpop_bound - DEV_CLIENTS.keys()
    if unknown:
        raise DevInitError(f"unknown client {min(unknown)!r}: dev-init registers {', '.join(DEV_CLIENTS)}")
    state = settings.voicebank_state
    try:
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        state.chmod(0o700)  # an existing directory too: it holds private keys
    except OSError as exc:
        raise DevInitError(f"cannot create the state directory {state}: {exc.strerror}") from None
    try:
        if bank_only:
            _seed(settings, bank_db_url, out)
        else:
            _fill(settings, force=force, dpop_bound=dpop_bound, bank_db_url=bank_db_url, out=out, clock=clock)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise DevInitError(f"cannot use{where}: {exc.strerror or type(exc).__name__}") from None


def _fill(
    settings: IssuerSettings,
    *,
    force: bool,
    dpop_bound: frozenset[str],
    bank_db_url: str | None,
    out: Callable[[str], None],
    clock: Callable[[], float],
) -> None:
    state = settings.voicebank_state
    if force and settings.keys_store == "file" and settings.keys_dir.exists():
        shutil.rmtree(settings.keys_dir)
    _passphrase(settings, force, out)
    if settings.keys_store == "file":
        try:
            ring = asyncio.run(key_store(settings, None, clock).load(clock()))
        except KeyStoreUnavailable as exc:  # permissions or the disk: --force would not help
            raise DevInitError(f"cannot open the issuer key ring: {exc}") from None
        except KeyRingError as exc:
            raise DevInitError(f"cannot open the issuer key ring: {exc} (rerun with --force)") from None
        active = ", ".join(f"{alg} {ring.signing_key(alg).kid}" for alg in ring.algs)
        out(f"issuer keys: {settings.keys_dir} (active {active})")
    else:
        out("issuer keys: KEYS_STORE=redis; the issuer creates its ring in Redis on first start")
    keys = {cid: _client_key(state, cid, force, out) for cid in DEV_CLIENTS}
    _write_registry(settings.clients_file, keys, dpop_bound, out)
    _seed(settings, bank_db_url, out)
