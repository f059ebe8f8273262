"""The service fixtures give real, isolated Redis and PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest
import redis

from tests._services import RedisProcess, redis_answers


def test_redis_is_real_and_prefixed(redis_client: redis.Redis, redis_prefix: str) -> None:
    """The Redis fixture talks to a real server; keys live under the test's prefix."""
    assert redis_client.ping()
    redis_client.set(f"{redis_prefix}:k", b"v")
    assert redis_client.get(f"{redis_prefix}:k") == b"v"
    info = redis_client.info("server")
    assert "redis_version" in info


async def test_async_redis_client(aredis_client, redis_prefix: str) -> None:  # type: ignore[no-untyped-def]
    """The asyncio client reaches the same server."""
    await aredis_client.set(f"{redis_prefix}:a", b"1")
    assert await aredis_client.get(f"{redis_prefix}:a") == b"1"


def test_private_redis_can_be_stopped_and_restarted(private_redis: RedisProcess) -> None:
    """A test's own redis-server can go down and come back."""
    assert redis_answers(private_redis.url)
    private_redis.stop()
    assert not redis_answers(private_redis.url)
    private_redis.start()
    assert redis_answers(private_redis.url)


def test_dead_redis_refuses_connections(dead_redis_url: str) -> None:
    """The dead Redis URL refuses connections."""
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(dead_redis_url, socket_connect_timeout=0.5).ping()


def test_hung_redis_times_out(hung_redis_url: str) -> None:
    """The hung Redis accepts connections but never answers."""
    client = redis.Redis.from_url(hung_redis_url, socket_timeout=0.2, socket_connect_timeout=0.5)
    with pytest.raises(redis.TimeoutError):
        client.ping()


def test_postgres_schema_is_private(postgres_schema: tuple[str, str]) -> None:
    """Each test gets its own PostgreSQL schema, usable for tables."""
    url, schema = postgres_schema
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{schema}".t (k text primary key, v bytea)')
        conn.execute(f'INSERT INTO "{schema}".t VALUES (%s, %s)', ("a", b"\x00\x01"))
        row = conn.execute(f'SELECT v FROM "{schema}".t WHERE k = %s', ("a",)).fetchone()
    assert row is not None
    assert bytes(row[0]) == b"\x00\x01"
