"""A stand-in for LlamaIndex's ``RedisKVStore`` when its package is not installed.

``llama-index-storage-kvstore-redis`` pins ``redis<6``; where it is absent the
tests use this copy of its behaviour: same class name, same client
attributes, same layout (one Redis hash per collection, JSON values), a
pipelined ``put_all`` and no batched ``aput_all`` (the upstream trap).
"""

from __future__ import annotations

import json
from typing import Any

from llama_index.core.storage.kvstore.types import DEFAULT_COLLECTION, BaseKVStore
from redis import Redis
from redis.asyncio import Redis as AsyncRedis


class RedisKVStore(BaseKVStore):
    """Minimal real Redis-backed BaseKVStore mirroring the upstream one."""

    def __init__(self, redis_uri: str, **kwargs: Any) -> None:
        self._redis_client = Redis.from_url(redis_uri, **kwargs)
        self._async_redis_client = AsyncRedis.from_url(redis_uri, **kwargs)

    def put(self, key: str, val: dict[str, Any], collection: str = DEFAULT_COLLECTION) -> None:
        self._redis_client.hset(name=collection, key=key, value=json.dumps(val))

    async def aput(
        self, key: str, val: dict[str, Any], collection: str = DEFAULT_COLLECTION
    ) -> None:
        await self._async_redis_client.hset(name=collection, key=key, value=json.dumps(val))

    def put_all(
        self,
        kv_pairs: list[tuple[str, dict[str, Any]]],
        collection: str = DEFAULT_COLLECTION,
        batch_size: int = 1,
    ) -> None:
        with self._redis_client.pipeline() as pipe:
            count = 0
            for key, val in kv_pairs:
                pipe.hset(name=collection, key=key, value=json.dumps(val))
                count += 1
                if count >= batch_size:
                    count = 0
                    pipe.execute()
            if count:
                pipe.execute()

    def get(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict[str, Any] | None:
        raw = self._redis_client.hget(name=collection, key=key)
        return None if raw is None else dict(json.loads(raw))

    async def aget(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict[str, Any] | None:
        raw = await self._async_redis_client.hget(name=collection, key=key)
        return None if raw is None else dict(json.loads(raw))

    def get_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict[str, Any]]:
        return {
            k.decode() if isinstance(k, bytes) else k: dict(json.loads(v))
            for k, v in self._redis_client.hscan_iter(name=collection)
        }

    async def aget_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict[str, Any]]:
        return {
            k.decode() if isinstance(k, bytes) else k: dict(json.loads(v))
            async for k, v in self._async_redis_client.hscan_iter(name=collection)
        }

    def delete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        return bool(self._redis_client.hdel(collection, key) > 0)

    async def adelete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        return bool(await self._async_redis_client.hdel(collection, key) > 0)
