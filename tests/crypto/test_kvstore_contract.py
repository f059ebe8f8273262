"""One BaseKVStore contract, run against the plain SimpleKVStore and every encrypted store."""

from __future__ import annotations

import pytest

from tests.crypto.conftest import Ops, StoreCase


async def test_put_then_get_returns_the_value(ops: Ops, store_case: StoreCase) -> None:
    """A stored value comes back equal; a missing key reads as None."""
    coll = store_case.coll()
    value = {"text": "Zürich ☃ notes", "n": 3, "nested": {"list": [1, 2.5, None, True]}}
    await ops.put("doc-1", value, coll)
    assert await ops.get("doc-1", coll) == value
    assert await ops.get("missing", coll) is None


async def test_put_overwrites(ops: Ops, store_case: StoreCase) -> None:
    """A second put under the same key replaces the value."""
    coll = store_case.coll()
    await ops.put("k", {"v": 1}, coll)
    await ops.put("k", {"v": 2}, coll)
    assert await ops.get("k", coll) == {"v": 2}
    assert await ops.get_all(coll) == {"k": {"v": 2}}


async def test_stored_value_is_not_aliased(ops: Ops, store_case: StoreCase) -> None:
    """Mutating the dict after put, or the dict a get returned, does not change the store."""
    coll = store_case.coll()
    value = {"v": 1}
    await ops.put("k", value, coll)
    value["v"] = 99
    got = await ops.get("k", coll)
    assert got == {"v": 1}
    assert got is not None
    got["v"] = 42
    assert await ops.get("k", coll) == {"v": 1}


async def test_collections_are_isolated(ops: Ops, store_case: StoreCase) -> None:
    """The same key in two collections holds two values."""
    a, b = store_case.coll("a"), store_case.coll("b")
    await ops.put("k", {"in": "a"}, a)
    await ops.put("k", {"in": "b"}, b)
    assert await ops.get("k", a) == {"in": "a"}
    assert await ops.get("k", b) == {"in": "b"}
    assert await ops.delete("k", a) is True
    assert await ops.get("k", b) == {"in": "b"}


async def test_get_all_returns_real_keys(ops: Ops, store_case: StoreCase) -> None:
    """get_all maps every original key (paths, unicode) to its value."""
    coll = store_case.coll()
    pairs = {f"/home/ann/report-{i}.pdf": {"i": i} for i in range(5)}
    pairs["ключ"] = {"i": -1}
    for key, val in pairs.items():
        await ops.put(key, val, coll)
    assert await ops.get_all(coll) == pairs
    assert await ops.get_all(store_case.coll("empty")) == {}


async def test_delete_reports_whether_the_key_existed(ops: Ops, store_case: StoreCase) -> None:
    """delete returns True once, then False; the key is gone."""
    coll = store_case.coll()
    await ops.put("k", {"v": 1}, coll)
    assert await ops.delete("k", coll) is True
    assert await ops.get("k", coll) is None
    assert await ops.delete("k", coll) is False


async def test_put_all_batch_size_one(ops: Ops, store_case: StoreCase) -> None:
    """put_all with LlamaIndex's default batch size stores every pair."""
    coll = store_case.coll()
    pairs = [(f"k{i}", {"i": i}) for i in range(7)]
    await ops.put_all(pairs, coll)
    assert await ops.get_all(coll) == dict(pairs)


async def test_empty_value_and_empty_put_all(ops: Ops, store_case: StoreCase) -> None:
    """An empty dict round-trips and an empty put_all is a no-op."""
    coll = store_case.coll()
    await ops.put("empty", {}, coll)
    await ops.put_all([], coll)
    assert await ops.get("empty", coll) == {}
    assert await ops.get_all(coll) == {"empty": {}}


@pytest.mark.parametrize("batch_size", [2, 3, 100])
async def test_put_all_batches_beyond_one(ops: Ops, store_case: StoreCase, batch_size: int) -> None:
    """Encrypted stores accept any batch size (upstream's default put_all raises above 1)."""
    if store_case.name in ("simple", "sealed-memory"):
        pytest.skip("SimpleKVStore inherits BaseKVStore.put_all, which refuses batches")
    coll = store_case.coll()
    pairs = [(f"k{i}", {"i": i, "text": "x" * i}) for i in range(10)]
    await ops.put_all(pairs, coll, batch_size=batch_size)
    assert await ops.get_all(coll) == dict(pairs)
