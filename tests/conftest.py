"""Fixtures shared by the whole suite: real redis-server and PostgreSQL servers on free loopback ports."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from tests.support.redis_proxy import AnswerLosingProxy
from tests.support.servers import PostgresServer, RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an empty database on the shared real Redis server."""
    if redis_server.process is None:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
async def redis_proxy(redis_url: str, redis_server: RedisServer) -> AsyncIterator[AnswerLosingProxy]:
    """A proxy to the empty Redis database of `redis_url` that can lose one answer on demand."""
    async with AnswerLosingProxy(redis_server.port).running() as proxy:
        yield proxy


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a new, empty database on the shared real PostgreSQL server."""
    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    admin = f"postgresql://{postgres_server.user}@127.0.0.1:{postgres_server.port}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # the name is ours: hex only
    yield postgres_server.url(name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
