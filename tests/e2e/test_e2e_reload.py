"""SIGHUP to a real issuer process: it re-reads the clients file; the other replica keeps its own."""

from __future__ import annotations

import json
import signal
import time

import pytest

from keys import assertion_form, load_client_key
from tests.support.e2e import Stack, eventually, issuer_client

pytestmark = pytest.mark.e2e


async def backend_status(stack: Stack, replica: int) -> int:
    http, _ = issuer_client(stack, replica)
    async with http:
        key = load_client_key(stack.state, "backend")
        form = assertion_form("backend", key, f"{stack.issuer}/token", time.time())
        response = await http.post("/token", data={"grant_type": "client_credentials", **form})
    return response.status_code


async def test_sighup_reloads_the_clients_file_on_that_replica(stack: Stack) -> None:
    path = stack.state / "clients.json"
    original = path.read_text()
    registry = json.loads(original)
    for client in registry["clients"]:
        client["disabled"] = client["client_id"] == "backend"
    path.write_text(json.dumps(registry))
    try:
        stack.issuers[0].process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]

        async def refused() -> bool:
            return await backend_status(stack, 0) == 401

        assert await eventually(refused)
        assert await backend_status(stack, 1) == 200  # not reloaded yet: its registry is its own

        path.write_text("{broken")
        stack.issuers[0].process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]

        async def logged() -> bool:
            return "client registry not reloaded" in stack.issuers[0].output()

        assert await eventually(logged)
        assert await backend_status(stack, 0) == 401  # a broken file changes nothing
    finally:
        path.write_text(original)
        stack.issuers[0].process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]

    async def accepted() -> bool:
        return await backend_status(stack, 0) == 200

    assert await eventually(accepted)
