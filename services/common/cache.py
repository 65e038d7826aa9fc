"""In-process caches (aiocache) with a size bound, and single-flight loading.

A load shared by several callers runs in a task of its own, with its own time limit: a caller
that is cancelled, or whose own deadline passes, stops waiting, but neither the load nor the
other callers waiting for it are affected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from aiocache import SimpleMemoryCache
from aiocache.serializers import NullSerializer

T = TypeVar("T")


class BoundedMemoryCache(SimpleMemoryCache):
    """aiocache's memory cache with a bound: past `max_size` keys the oldest is dropped.

    Values are kept as Python objects (no serializer) and calls are not wrapped in timeouts:
    both would only add cost to an in-memory dictionary lookup on the read path.
    """

    def __init__(self, max_size: int, ttl: float, namespace: str = "") -> None:
        super().__init__(serializer=NullSerializer(), timeout=None, ttl=ttl, namespace=namespace)
        self.max_size = max_size

    async def _set(self, key: str, value: Any, ttl: Any = None, _cas_token: Any = None,
                   _conn: Any = None) -> Any:
        if key not in self._cache:
            while len(self._cache) >= self.max_size:
                await self._delete(next(iter(self._cache)))
        return await super()._set(key, value, ttl=ttl, _cas_token=_cas_token, _conn=_conn)

    def __len__(self) -> int:
        return len(self._cache)

    def __contains__(self, key: str) -> bool:
        return self.build_key(key) in self._cache


class SingleFlight(Generic[T]):
    """One load at a time per key, shared by every concurrent caller."""

    def __init__(self, limit_s: float) -> None:
        self._limit_s = limit_s
        self._loads: dict[str, asyncio.Task[T]] = {}

    def __len__(self) -> int:
        return len(self._loads)

    def start(self, key: str, load: Callable[[], Awaitable[T]]) -> tuple[asyncio.Task[T], bool]:
        """The key's running load, or a new one: (task, joined an existing one)."""
        task = self._loads.get(key)
        if task is not None:
            return task, True
        task = asyncio.ensure_future(asyncio.wait_for(load(), self._limit_s))
        self._loads[key] = task
        task.add_done_callback(lambda done: self._finished(key, done))
        return task, False

    def _finished(self, key: str, task: asyncio.Task[T]) -> None:
        if self._loads.get(key) is task:
            del self._loads[key]
        if not task.cancelled():
            task.exception()  # retrieved here: a load nobody waits for any more is not an error

    async def run(self, key: str, load: Callable[[], Awaitable[T]],
                  wait_s: float | None = None) -> tuple[T, bool]:
        """Wait (at most `wait_s`) for the key's load: (value, joined an existing one)."""
        task, joined = self.start(key, load)
        return await asyncio.wait_for(asyncio.shield(task), wait_s), joined


async def get_or_load(
    cache: SimpleMemoryCache,
    flights: SingleFlight[T],
    key: str,
    load: Callable[[], Awaitable[T]],
) -> tuple[T, bool]:
    """The cached value, or one load shared by every concurrent caller: (value, was_hit).
    N concurrent misses cost one store read; the value is cached by the load itself, so it is
    cached even when every caller gave up waiting."""
    value = await cache.get(key)
    if value is not None:
        return value, True

    async def load_and_cache() -> T:
        loaded = await load()
        await cache.set(key, loaded)
        return loaded

    value, _ = await flights.run(key, load_and_cache)
    return value, False
