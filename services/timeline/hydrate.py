"""Hydration: post ids -> bodies, from the in-process cache first and one BatchGetPosts call
for the rest. Most reads never pay the second hop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from services.common import metrics, telemetry
from services.common.cache import BoundedMemoryCache
from services.gen.feed.v1 import post_pb2, post_pb2_grpc


class Hydrator:
    def __init__(self, posts: post_pb2_grpc.PostServiceStub, size: int, ttl_s: float) -> None:
        self._posts = posts
        self.cache = BoundedMemoryCache(size, ttl=ttl_s, namespace="b:")
        # Single flight per post id: a body already being fetched for one reader is awaited by
        # the others, so N readers of one fresh post cost one BatchGetPosts, not N.
        self._inflight: dict[str, asyncio.Future[post_pb2.Post | None]] = {}
        self.hits = 0
        self.misses = 0

    async def bodies(self, post_ids: Sequence[int], timeout_s: float) -> dict[int, post_pb2.Post]:
        """Bodies of the posts that exist; deleted ones are simply absent."""
        if not post_ids:
            return {}
        keys = [str(i) for i in post_ids]
        cached = await self.cache.multi_get(keys)
        found = {i: p for i, p in zip(post_ids, cached, strict=True) if p is not None}
        missing = [k for k, p in zip(keys, cached, strict=True) if p is None]
        self.hits += len(found)
        self.misses += len(missing)
        metrics.body_cache(len(found), len(missing))
        telemetry.current_span().set_attributes(
            {"fanline.cache.hits": len(found), "fanline.cache.misses": len(missing)}
        )
        if not missing:
            return found
        joined = [k for k in missing if k in self._inflight]
        mine = [k for k in missing if k not in self._inflight]
        waits = {k: self._inflight[k] for k in joined}
        if joined:  # fetched by a concurrent read: no BatchGetPosts of our own for them
            telemetry.current_span().set_attribute("fanline.hydrate.joined", len(joined))
        if mine:
            found.update((int(k), p) for k, p in (await self._fetch(mine, timeout_s)).items())
        for key, future in waits.items():
            post = await asyncio.wait_for(asyncio.shield(future), timeout_s)
            if post is not None:
                found[int(key)] = post
        return found

    async def _fetch(self, keys: list[str], timeout_s: float) -> dict[str, post_pb2.Post]:
        loop = asyncio.get_running_loop()
        futures = {k: loop.create_future() for k in keys}
        self._inflight.update(futures)
        try:
            reply = await self._posts.BatchGetPosts(
                post_pb2.BatchGetPostsRequest(post_ids=keys), timeout=timeout_s
            )
            if reply.posts:
                await self.cache.multi_set([(p.post_id, p) for p in reply.posts])
            by_id = {p.post_id: p for p in reply.posts}
            for key, future in futures.items():
                future.set_result(by_id.get(key))
            return by_id
        except BaseException as exc:
            for future in futures.values():
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
                    future.exception()  # marks it retrieved; each waiter re-raises it
            raise
        finally:
            for key in keys:
                self._inflight.pop(key, None)

    def is_cached(self, post_id: int) -> bool:
        return str(post_id) in self.cache

    async def cached(self, post_ids: Sequence[int]) -> dict[int, post_pb2.Post]:
        """Only what the cache holds (no fetch): for a page served past its budget."""
        values = await self.cache.multi_get([str(i) for i in post_ids])
        return {i: p for i, p in zip(post_ids, values, strict=True) if p is not None}

    async def forget(self, post_id: str) -> None:
        await self.cache.delete(post_id)
