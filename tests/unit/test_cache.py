"""The in-process cache: one TTL, a size bound, no timer per key (a clock the test moves)."""

from __future__ import annotations

from fanline.common.cache import BoundedMemoryCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_entries_expire_ttl_after_their_last_set() -> None:
    clock = Clock()
    cache = BoundedMemoryCache(10, ttl=5, clock=clock)
    await cache.set("a", b"1")
    clock.now += 3
    await cache.set("b", b"2")
    await cache.set("a", b"1 again")  # set again: lives 5 s from now
    clock.now += 4  # a: 4 s after its second set; b: 4 s
    assert await cache.multi_get(["a", "b"]) == [b"1 again", b"2"]
    clock.now += 1
    assert await cache.get("a") is None and await cache.get("b") is None
    assert "a" not in cache and len(cache) == 0


async def test_expired_entries_leave_as_new_ones_arrive_without_being_read() -> None:
    clock = Clock()
    cache = BoundedMemoryCache(1000, ttl=1, clock=clock)
    for i in range(100):
        await cache.set(str(i), i)
    clock.now += 2
    await cache.set("new", 1)
    assert len(cache) == 1  # the 100 expired ones are gone from memory, not just hidden


async def test_past_the_bound_the_oldest_goes() -> None:
    cache = BoundedMemoryCache(3, ttl=60, clock=Clock())
    for key in "abcd":
        await cache.set(key, key)
    assert await cache.multi_get(list("abcd")) == [None, "b", "c", "d"]
    await cache.set("b", "b2")  # moves to the back: c is now the oldest
    await cache.set("e", "e")
    assert await cache.multi_get(list("bcde")) == ["b2", None, "d", "e"]
    assert len(cache) == 3


async def test_delete_clear_and_namespaces() -> None:
    cache = BoundedMemoryCache(10, ttl=60, namespace="x:", clock=Clock())
    await cache.multi_set([("a", 1), ("b", 2)])
    assert await cache.delete("a") == 1 and await cache.delete("a") == 0
    assert "b" in cache and await cache.exists("b")
    await cache.clear()
    assert len(cache) == 0 and await cache.get("b") is None
