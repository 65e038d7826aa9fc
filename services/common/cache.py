"""In-process caches (aiocache) with a size bound and single-flight loading."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiocache import SimpleMemoryCache
from aiocache.lock import RedLock
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


async def get_or_load(
    cache: SimpleMemoryCache,
    key: str,
    load: Callable[[], Awaitable[T]],
    lease_s: float = 1.0,
) -> tuple[T, bool]:
    """The cached value, or one load shared by every concurrent caller: (value, was_hit).

    The first caller to miss takes the key's lock and loads; the others wait for it (at most
    `lease_s`) and then read what it stored, so N concurrent misses cost one store read.
    """
    value = await cache.get(key)
    if value is not None:
        return value, True
    async with RedLock(cache, key, lease=lease_s):
        value = await cache.get(key)
        if value is not None:
            return value, True
        value = await load()
        await cache.set(key, value)
        return value, False
