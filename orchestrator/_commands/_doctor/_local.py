"""Checks of what lies on this machine or behind a URL of a store: clients, keys, Redis, database, modes.

None of them writes: the key ring is read as it is (`KeyStore.peek`), SQLite is opened read-only.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from issuer import ClientRegistry, ClientRegistryError
from keys import KeyMaterialError, KeyPair, KeyRingError, KeyStore
from orchestrator._commands._doctor._report import Check, fail, ok, skip

__all__ = [
    "client_keys_match",
    "clients_file",
    "database",
    "file_modes",
    "key_ring",
    "redacted",
    "redis_answers",
]


def redacted(url: str) -> str:
    """A store URL fit to print: any user name and password are cut."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, "***@" + netloc, parts.path, parts.query, parts.fragment))


def clients_file(path: Path) -> tuple[Check, ClientRegistry | None]:
    try:
        registry = ClientRegistry.load(path)
    except ClientRegistryError as exc:
        return fail("clients", f"{exc} (run `voicebank dev-init` or set ISSUER_CLIENTS_FILE)"), None
    names = ", ".join(sorted(client.client_id for client in registry.clients()))
    return ok("clients", f"{path}: {names}"), registry


def client_keys_match(registry: ClientRegistry, keys: dict[str, Path]) -> Check:
    """Each client private key on this machine is a key its client is registered with."""
    present = {client_id: path for client_id, path in keys.items() if path.is_file()}
    if not present:
        return skip("client keys", "no client private key on this machine")
    for client_id, path in sorted(present.items()):
        client = registry.get(client_id)
        if client is None:
            return fail(
                "client keys", f"{path} is for {client_id!r}, which the clients file does not register"
            )
        try:
            kid = KeyPair.from_pem(path.read_bytes(), None).kid
        except (OSError, KeyMaterialError) as exc:
            return fail("client keys", f"{path} is not a usable private key ({type(exc).__name__})")
        registered = {str(jwk.get("kid")) for jwk in (client.jwks or {}).get("keys", [])}
        if client.jwks is not None and kid not in registered:
            return fail(
                "client keys",
                f"{path} is not a key registered for {client_id!r}: the issuer would refuse it "
                "(invalid_client)",
            )
    return ok("client keys", f"{', '.join(sorted(present))} match the clients file")


async def key_ring(store: KeyStore, where: str, passphrase: str) -> Check:
    """The issuer's ring exists and every live private key decrypts with the passphrase."""
    try:
        ring = await store.peek()
    except KeyRingError as exc:
        return fail("issuer keys", str(exc))
    except RedisError as exc:
        return fail("issuer keys", f"cannot read the key ring from Redis ({type(exc).__name__})")
    if ring is None:
        return fail(
            "issuer keys", f"no key ring in {where} (run `voicebank dev-init`, or start the issuer once)"
        )
    active = ", ".join(f"{alg} {ring.signing_key(alg).kid}" for alg in ring.algs)
    return ok("issuer keys", f"{len(ring.pairs)} keys in {where} decrypt with {passphrase}; active {active}")


async def redis_answers(url: str | None) -> Check:
    if not url:
        return skip(
            "redis", "REDIS_URL is not set: replay caches, refresh tokens and sessions stay in memory"
        )
    client = aioredis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        await client.ping()
    except RedisError as exc:
        return fail("redis", f"REDIS_URL {redacted(url)} does not answer ({type(exc).__name__})")
    finally:
        await client.aclose()
    return ok("redis", f"REDIS_URL {redacted(url)} answers")


def database(url: str) -> Check:
    """The bank database answers and holds the bank's tables; SQLite is opened read-only."""
    parsed = make_url(url)
    where = redacted(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        if not path.is_file():
            return fail("database", f"no bank database at {path} (run `voicebank dev-init`)")
        url = f"sqlite:///file:{path.resolve()}?mode=ro&uri=true"
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            users = connection.execute(text("SELECT count(*) FROM users")).scalar_one()
    except SQLAlchemyError as exc:
        reason = type(getattr(exc, "orig", None) or exc).__name__
        return fail("database", f"{where} does not answer or has no bank tables ({reason})")
    finally:
        engine.dispose()
    return ok("database", f"{where} answers ({users} users)")


def _loose(paths: Iterable[Path]) -> list[str]:
    found = []
    for path in paths:
        mode = stat.S_IMODE(path.lstat().st_mode)
        wanted = 0o700 if path.is_dir() else 0o600
        if mode & 0o077:
            found.append(f"{path} is {mode:04o}, not {wanted:04o}")
    return found


def file_modes(state: Path) -> Check:
    """The state directory is the owner's alone: 0700, and every file in it 0600."""
    if not state.is_dir():
        return fail("file modes", f"no state directory at {state} (run `voicebank dev-init`)")
    loose = _loose([state, *sorted(state.rglob("*"))])
    if loose:
        more = f" (and {len(loose) - 3} more)" if len(loose) > 3 else ""
        return fail("file modes", "; ".join(loose[:3]) + more)
    return ok("file modes", f"{state} is 0700 and everything in it is the owner's alone")
