"""A flood of tokens with random unknown kids costs at most one JWKS fetch per refetch interval."""

from __future__ import annotations

import asyncio
import random

from tests.support.stack import INVALID_TOKEN, Stack, with_header

FLOOD = 500
REFETCH_INTERVAL = 5.0  # the JWKS cache's default


async def test_unknown_kid_flood_fetches_at_most_once_per_interval(stack: Stack) -> None:
    tokens = await stack.tokens()
    read = await tokens.get_token("read")
    rng = random.Random(4)  # kids for a test, not secrets
    # Real issuer tokens with their kid swapped for a random one (43 base64url chars, like a thumbprint).
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    forged = [with_header(read, kid="".join(rng.choices(alphabet, k=43))) for _ in range(FLOOD)]
    fetches = stack.link.jwks_fetches

    async def burst() -> tuple[list[int], list[int]]:
        flood = [stack.post(token, "list_payees", {}) for token in forged]
        valid = [stack.post(read, "get_balance", {}) for _ in range(20)]
        answers = await asyncio.gather(*flood, *valid)
        for answer in answers[:FLOOD]:
            assert answer.headers["www-authenticate"] == INVALID_TOKEN
        return [a.status_code for a in answers[:FLOOD]], [a.status_code for a in answers[FLOOD:]]

    # Right after the startup load: no refetch at all within the interval.
    refused, served = await burst()
    assert set(refused) == {401}
    assert set(served) == {200}  # valid tokens still succeed during the flood
    assert stack.link.jwks_fetches == fetches

    # Each later interval: the whole concurrent flood shares one fetch.
    for interval in range(1, 3):
        stack.clock.advance(REFETCH_INTERVAL)
        refused, served = await burst()
        assert set(refused) == {401}
        assert set(served) == {200}
        assert stack.link.jwks_fetches == fetches + interval

    # Within an interval, nothing more.
    stack.clock.advance(REFETCH_INTERVAL - 0.1)
    refused, served = await burst()
    assert (set(refused), set(served)) == ({401}, {200})
    assert stack.link.jwks_fetches == fetches + 2
    # A valid call through the real client is unaffected.
    assert (await stack.call(read, "list_loans"))["loans"]
