"""In-process caches (aiocache) with a size bound, and single-flight loading.

A load shared by several callers runs in a task of its own, with its own time limit: a caller
that is cancelled, or whose own deadline passes, stops waiting, but neither the load nor the
other callers waiting for it are affected.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from aiocache.base import BaseCache
from aiocache.serializers import NullSerializer

T = TypeVar("T")


class BoundedMemoryCache(BaseCache):
    """An in-memory aiocache backend with a size bound and one TTL for every entry, kept
    without a timer per key. It implements aiocache's backend interface (the `_get`, `_set`,
    ... methods a backend provides), so callers use the plain aiocache API (`get`, `set`,
    `multi_get`, `delete`, `clear`, `exists`, with namespaces).

    aiocache's own SimpleMemoryCache expires a key with a `loop.call_later` handle per key
    (about 360 bytes each, more than the post body it guards, and a heap the event loop keeps
    ordered) and has no size bound. Here every entry
    lives `ttl` seconds from its last set, so the order entries were set in is the order they
    expire in: an ordered map of expiry times drops expired entries from its front as new ones
    arrive (O(1) each), and a read of an expired entry misses. Past `max_size` keys the
    oldest goes. Values are kept as they are (no serializer) and calls are not wrapped in
    timeouts: both would only add cost to an in-memory lookup on the read path.
    """

    def __init__(self, max_size: int, ttl: float, namespace: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(serializer=NullSerializer(), timeout=None, namespace=namespace)
        self.max_size = max_size
        self.ttl_s = ttl
        self._clock = clock
        self._values: dict[str, Any] = {}
        self._expiry: OrderedDict[str, float] = OrderedDict()  # oldest first

    def _fresh(self, key: str, now: float) -> Any:
        expires = self._expiry.get(key)
        if expires is None:
            return None
        if expires <= now:
            self._drop(key)
            return None
        return self._values.get(key)

    def _drop(self, key: str) -> bool:
        self._expiry.pop(key, None)
        return self._values.pop(key, _ABSENT) is not _ABSENT

    async def _get(self, key: str, encoding: str = "utf-8", _conn: Any = None) -> Any:
        return self._fresh(key, self._clock())

    async def _multi_get(self, keys: list[str], encoding: str = "utf-8",
                         _conn: Any = None) -> list[Any]:
        now = self._clock()
        return [self._fresh(key, now) for key in keys]

    async def _set(self, key: str, value: Any, ttl: Any = None, _cas_token: Any = None,
                   _conn: Any = None) -> Any:
        now = self._clock()
        self._drop(key)  # set again: it goes to the back, expiring last
        while self._expiry:
            oldest, expires = next(iter(self._expiry.items()))
            if expires > now and len(self._expiry) < self.max_size:
                break
            self._drop(oldest)
        self._values[key] = value
        self._expiry[key] = now + self.ttl_s
        return True

    async def _multi_set(self, pairs: Any, ttl: Any = None, _conn: Any = None) -> Any:
        for key, value in pairs:
            await self._set(key, value)
        return True

    async def _exists(self, key: str, _conn: Any = None) -> bool:
        return self._fresh(key, self._clock()) is not None

    async def _delete(self, key: str, _conn: Any = None) -> int:
        return 1 if self._drop(key) else 0

    async def _clear(self, namespace: str | None = None, _conn: Any = None) -> bool:
        for key in [k for k in self._expiry if not namespace or k.startswith(namespace)]:
            self._drop(key)
        return True

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, key: str) -> bool:
        return self._fresh(self.build_key(key), self._clock()) is not None


_ABSENT = object()


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
    cache: BaseCache,
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
