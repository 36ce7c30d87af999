"""The issuer's Redis state when an answer is lost (the command ran, the connection dropped before its reply):
a rotation sent again is not reuse, and a reservation is never counted twice (`keys`' resend rule)."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from issuer._oauth._errors import InvalidGrant
from issuer._oauth._refresh import RefreshLifetimes
from issuer._oauth._refresh_redis import RedisRefreshStore
from issuer._oauth._spending import RedisSpendingLedger
from keys import redis_client
from tests.support.clock import FakeClock
from tests.support.redis_proxy import AnswerLosingProxy

CLIENT = "orchestrator"


async def test_regression_a_rotation_whose_answer_was_lost_keeps_the_session(
    redis_proxy: AnswerLosingProxy,
) -> None:
    """A rotation resent after a dropped connection found its token spent and revoked the family: a live
    call lost its session to a network blip. The script now knows the successor it made."""
    client = redis_client(redis_proxy.url)
    try:
        store = RedisRefreshStore(client, RefreshLifetimes(idle=1800, absolute=43200))
        first = await store.create(client_id=CLIENT, sub="alice", sid="s", scope="read", now=0.0)
        _, second = await store.spend(first, client_id=CLIENT, now=1.0)  # the script is loaded now
        redis_proxy.lose_answer_to(b"EVALSHA")
        family, third = await store.spend(second, client_id=CLIENT, now=2.0)
        assert redis_proxy.lost == 1
        assert family.revoked is False
        _, fourth = await store.spend(third, client_id=CLIENT, now=3.0)
        # Anyone else presenting the spent token is still reuse, and ends the family.
        with pytest.raises(InvalidGrant):
            await store.spend(second, client_id=CLIENT, now=4.0)
        with pytest.raises(InvalidGrant):
            await store.spend(fourth, client_id=CLIENT, now=5.0)
    finally:
        await client.aclose()


async def test_regression_a_reservation_whose_answer_was_lost_is_counted_once(
    redis_proxy: AnswerLosingProxy, clock: FakeClock
) -> None:
    """A reservation resent after a dropped connection counted the payment twice (and answered that it
    needed approval); it is now sent once: the caller sees an outage and the amount stays counted once."""
    client = redis_client(redis_proxy.url)
    try:
        ledger = RedisSpendingLedger(client, clock=clock)
        later = clock() + 60
        assert await ledger.reserve("s1", 100, limit=50_000, expires_at=later)  # the script is loaded now
        redis_proxy.lose_answer_to(b"EVALSHA")
        with pytest.raises(RedisConnectionError):
            await ledger.reserve("s1", 30_000, limit=50_000, expires_at=later)
        assert redis_proxy.lost == 1
        assert await ledger.reserve("s1", 19_900, limit=50_000, expires_at=later)  # 100 + 30_000 + 19_900
        assert not await ledger.reserve("s1", 1, limit=50_000, expires_at=later)
    finally:
        await client.aclose()
