"""Admin key endpoints: list, rotate and revoke keys of the ring (bearer with `keys:admin`)."""

from __future__ import annotations

import logging
from typing import Any

from issuer._audit import Decision
from issuer._oauth._errors import Conflict, InvalidRequest, NotFound, TemporarilyUnavailable
from issuer._state import IssuerState
from keys import (
    ALGORITHMS,
    Algorithm,
    KeyRing,
    KeyStoreUnavailable,
    NoSigningKey,
    RevocationRefused,
    RotationRefused,
    UnknownKeyId,
)

ADMIN_SCOPE = "keys:admin"
log = logging.getLogger("issuer.admin")


def ring_view(ring: KeyRing) -> dict[str, Any]:
    return {"keys": ring.describe()}


def _unwritable(action: str, actor: str | None, exc: KeyStoreUnavailable) -> TemporarilyUnavailable:
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


def _touched(before: KeyRing, after: KeyRing) -> str | None:
    """The kids whose state a change set or changed, for the audit line."""
    states = {record.kid: record.state for record in before.records}
    kids = [record.kid for record in after.records if states.get(record.kid) is not record.state]
    return " ".join(kids) or None


async def rotate_keys(state: IssuerState, body: dict[str, Any], decision: Decision) -> dict[str, Any]:
    alg, force = _rotate_options(body)
    before = await state.store.current()
    try:
        ring = await state.store.rotate(state.clock(), alg=alg, force=force)
    except RotationRefused as exc:
        raise Conflict(str(exc), code=exc.code) from None
    except KeyStoreUnavailable as exc:
        raise _unwritable("rotation", decision.client_id, exc) from None
    decision.kid = _touched(before, ring)
    state.metrics.observe_ring(ring)
    for event in await state.events.changed(before, ring):
        state.metrics.rotations.inc()
        log.info("admin rotation by %s: %s %s", decision.client_id, event.type, event.kid)
    return ring_view(ring)


async def retire_algorithm(state: IssuerState, body: dict[str, Any], decision: Decision) -> dict[str, Any]:
    """End a migration: the old algorithm's keys retire once every replica signs with the new one."""
    unknown = body.keys() - {"alg"}
    if unknown:
        raise InvalidRequest(f"unknown members: {', '.join(sorted(unknown))[:200]}")
    alg = body.get("alg")
    if alg not in ALGORITHMS:
        raise InvalidRequest(f"alg must be one of {', '.join(ALGORITHMS)}")
    if alg == state.settings.issuer_signing_alg:
        # Only this replica's setting is known here: every replica must have switched (see operations).
        raise Conflict(f"this issuer signs with {alg} (ISSUER_SIGNING_ALG)", code="algorithm_in_use")
    before = await state.store.current()
    try:
        ring = await state.store.retire_alg(alg, state.clock())
    except NoSigningKey as exc:
        raise Conflict(str(exc), code=exc.code) from None
    decision.kid = _touched(before, ring)
    state.metrics.observe_ring(ring)
    log.warning("admin retirement of %s by %s", alg, decision.client_id)
    return ring_view(ring)


async def revoke_key(state: IssuerState, kid: str, decision: Decision) -> dict[str, Any]:
    before = await state.store.current()
    try:
        ring = await state.store.revoke(kid, state.clock())
        decision.kid = kid
    except UnknownKeyId:
        raise NotFound("no key has this kid", reason="unknown_kid") from None
    except RevocationRefused as exc:
        raise Conflict(str(exc), code=exc.code) from None
    except KeyStoreUnavailable as exc:
        raise _unwritable("revocation", decision.client_id, exc) from None
    state.metrics.observe_ring(ring)
    for event in await state.events.changed(before, ring):
        if event.type == "revoked":
            state.metrics.revocations.inc()
        log.warning("admin revocation by %s: %s %s", decision.client_id, event.type, event.kid)
    return ring_view(ring)
