"""Admin key endpoints: list, rotate and revoke keys of the ring (bearer with `keys:admin`)."""

from __future__ import annotations

import logging
from typing import Any

from issuer._oauth._errors import Conflict, InvalidRequest, NotFound, TemporarilyUnavailable
from issuer._state import IssuerState
from keys import (
    ALGORITHMS,
    Algorithm,
    KeyRing,
    KeyStoreUnavailable,
    RevocationRefused,
    RotationRefused,
    UnknownKeyId,
)

ADMIN_SCOPE = "keys:admin"
log = logging.getLogger("issuer.admin")


def ring_view(ring: KeyRing) -> dict[str, Any]:
    return {"keys": ring.describe()}


def _unwritable(action: str, actor: str, exc: KeyStoreUnavailable) -> TemporarilyUnavailable:
    # The operator reads the cause (directory, errno) in the log; the admin client gets a clear 503.
    log.warning("admin %s by %s failed: the key store cannot be written: %s", action, actor, exc)
    return TemporarilyUnavailable(
        f"the key store cannot be written: no {action} happened and the key ring is unchanged",
        reason=exc.code,
    )


def _rotate_options(body: dict[str, Any]) -> tuple[Algorithm | None, bool]:
    unknown = body.keys() - {"alg", "force"}
    if unknown:
        raise InvalidRequest(f"unknown members: {', '.join(sorted(unknown))[:200]}")
    alg = body.get("alg")
    if alg is not None and alg not in ALGORITHMS:
        raise InvalidRequest(f"alg must be one of {', '.join(ALGORITHMS)}")
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise InvalidRequest("force must be true or false")
    return alg, force


async def rotate_keys(state: IssuerState, body: dict[str, Any], actor: str) -> dict[str, Any]:
    alg, force = _rotate_options(body)
    before = await state.store.current()
    if alg is not None and alg not in before.algs:
        raise InvalidRequest(f"the key ring has no {alg} keys")
    try:
        ring = await state.store.rotate(state.clock(), alg=alg, force=force)
    except RotationRefused as exc:
        raise Conflict(str(exc), code=exc.code) from None
    except KeyStoreUnavailable as exc:
        raise _unwritable("rotation", actor, exc) from None
    for event in await state.events.changed(before, ring):
        state.metrics.rotations.inc()
        log.info("admin rotation by %s: %s %s", actor, event.type, event.kid)
    return ring_view(ring)


async def revoke_key(state: IssuerState, kid: str, actor: str) -> dict[str, Any]:
    before = await state.store.current()
    try:
        ring = await state.store.revoke(kid, state.clock())
    except UnknownKeyId:
        raise NotFound("no key has this kid", reason="unknown_kid") from None
    except RevocationRefused as exc:
        raise Conflict(str(exc), code=exc.code) from None
    except KeyStoreUnavailable as exc:
        raise _unwritable("revocation", actor, exc) from None
    for event in await state.events.changed(before, ring):
        if event.type == "revoked":
            state.metrics.revocations.inc()
        log.warning("admin revocation by %s: %s %s", actor, event.type, event.kid)
    return ring_view(ring)
