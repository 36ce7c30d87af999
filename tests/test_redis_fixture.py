import redis


def test_redis_fixture_is_a_real_empty_server(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.dbsize() == 0
    client.set("probe", "1")
    assert client.get("probe") == b"1"
    client.close()
