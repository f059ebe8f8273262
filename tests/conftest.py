"""Shared fixtures: real services, isolation, and sync/async query drivers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aredis

from tests._services import (
    RedisProcess,
    blackhole_server,
    delete_prefix,
    free_port,
    resolve_postgres_url,
    resolve_redis_url,
    unavailable,
)


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """URL of a real Redis for the whole session (see tests/_services.py)."""
    url, proc, reason = resolve_redis_url()
    if url is None:
        unavailable(reason)
    assert url is not None
    try:
        yield url
    finally:
        if proc is not None:
            proc.stop()


@pytest.fixture
def redis_prefix(redis_server_url: str) -> Iterator[str]:
    """A key prefix unique to this test; every key under it is deleted afterwards."""
    prefix = f"ragprod-test:{uuid.uuid4().hex[:12]}"
    yield prefix
    delete_prefix(redis_server_url, prefix)


@pytest.fixture
def redis_client(redis_server_url: str, redis_prefix: str) -> Iterator[redis.Redis]:
    """A sync client on the test Redis; use ``redis_prefix`` for every key."""
    client = redis.Redis.from_url(redis_server_url)
    yield client
    client.close()


@pytest.fixture
async def aredis_client(redis_server_url: str, redis_prefix: str) -> AsyncIterator[aredis.Redis]:
    """An asyncio client on the test Redis; use ``redis_prefix`` for every key."""
    client = aredis.Redis.from_url(redis_server_url)
    yield client
    await client.aclose()


@pytest.fixture
def private_redis() -> Iterator[RedisProcess]:
    """A redis-server of this test's own, which the test may stop, pause or restart."""
    try:
        proc = RedisProcess()
    except FileNotFoundError:
        unavailable("redis-server is not on PATH")
        raise
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def dead_redis_url() -> str:
    """A Redis URL where nothing listens (connection refused)."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def hung_redis_url() -> Iterator[str]:
    """A Redis URL whose server accepts connections and never answers."""
    with blackhole_server() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """URL of a real PostgreSQL (``DATABASE_URL`` or 127.0.0.1:5432/test)."""
    url, reason = resolve_postgres_url()
    if url is None:
        unavailable(reason)
    assert url is not None
    return url


@pytest.fixture
def postgres_schema(postgres_server_url: str) -> Iterator[tuple[str, str]]:
    """A fresh schema for this test: yields (url, schema); dropped afterwards."""
    import psycopg

    schema = f"ragprod_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield postgres_server_url, schema
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class Querier:
    """Runs a query through ``query`` or ``aquery``, so one test covers both."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, engine: Any, query: Any) -> Any:
        if self.mode == "sync":
            return engine.query(query)
        return asyncio.run(engine.aquery(query))

    def __repr__(self) -> str:
        return f"Querier({self.mode})"


@pytest.fixture(params=["sync", "async"])
def run_query(request: pytest.FixtureRequest) -> Querier:
    """Call ``run_query(engine, q)``: the test runs once with ``query``, once with ``aquery``."""
    return Querier(request.param)
