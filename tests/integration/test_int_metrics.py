"""Metrics of both services after real traffic: JWKS cache, replay store, and one `voicebank_` prefix."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from issuer import issuer_state
from tests.support.stack import Stack, bound


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    text = generate_latest(registry).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


async def test_jwks_cache_fetches_failures_and_age(stack: Stack) -> None:
    registry = stack.mcp_app.state.metrics.registry
    tokens = await stack.tokens()
    assert (await stack.call(await tokens.get_token("read"), "list_payees"))["payees"]
    fetches = value(registry, "voicebank_mcp_jwks_fetches_total")
    assert fetches is not None
    assert fetches >= 1
    assert value(registry, "voicebank_mcp_jwks_fetch_failures_total") == 0
    assert value(registry, "voicebank_mcp_jwks_age_seconds") == 0
    stack.clock.advance(100)
    assert value(registry, "voicebank_mcp_jwks_age_seconds") == 100

    stack.link.down = True
    stack.clock.advance(300)  # past max-age: the next verification refetches, and the fetch fails
    await stack.post(await tokens.get_token("read"), "list_payees", {})
    assert value(registry, "voicebank_mcp_jwks_fetch_failures_total") == 1
    assert value(registry, "voicebank_mcp_jwks_fetches_total") == fetches + 1
    assert value(registry, "voicebank_mcp_jwks_age_seconds") == 400


async def test_single_use_spends_are_counted(stack: Stack) -> None:
    registry = stack.mcp_app.state.metrics.registry
    tokens = await stack.tokens()
    payment = stack.payment("1.00", "metrics-1")
    token = await tokens.transact_token(bound("make_payment", payment))
    paid = await stack.call(token, "make_payment", **payment)
    assert paid["status"] == "completed"
    # The same token for the very movement it is bound to: spent, so a replay (not a mismatch).
    replayed = await stack.post(token, "make_payment", payment)
    assert replayed.status_code == 401
    ops = "voicebank_mcp_replay_operations_total"
    assert value(registry, ops, kind="transact", outcome="first") == 1
    assert value(registry, ops, kind="transact", outcome="replayed") == 1


async def test_every_metric_name_has_the_voicebank_prefix(stack: Stack) -> None:
    tokens = await stack.tokens()
    await stack.call(await tokens.get_token("read"), "get_balance")
    await stack.post("not-a-token", "get_balance", {})
    await stack.rotate()
    registries = [issuer_state(stack.issuer_app).metrics.registry, stack.mcp_app.state.metrics.registry]
    names = [family.name for registry in registries for family in registry.collect()]
    assert len(names) >= 12
    assert [name for name in names if not name.startswith("voicebank_")] == []
