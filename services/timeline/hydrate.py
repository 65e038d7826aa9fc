"""Hydration: post ids -> bodies, from the in-process cache first and one BatchGetPosts call
for the rest. Most reads never pay the second hop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fanline.common import metrics, telemetry
from fanline.common.cache import BoundedMemoryCache
from fanline.gen.feed.v1 import post_pb2, post_pb2_grpc


class Hydrator:
    def __init__(self, posts: post_pb2_grpc.PostServiceStub, size: int, ttl_s: float,
                 fetch_limit_s: float) -> None:
        self._posts = posts
        # Bodies are cached as their wire bytes: a parsed Post costs about 5 times the memory,
        # and parsing the 20 of a page again takes microseconds.
        self.cache = BoundedMemoryCache(size, ttl=ttl_s, namespace="b:")
        # Single flight per post id: a body already being fetched for one reader is awaited by
        # the others, so N readers of one fresh post cost one BatchGetPosts, not N. A fetch
        # runs in a task of its own, limited to `fetch_limit_s`: the reader that started it can
        # be cancelled or give up without failing or delaying the others.
        self._fetch_limit_s = fetch_limit_s
        self._inflight: dict[str, asyncio.Future[post_pb2.Post | None]] = {}
        self._fetches: set[asyncio.Task[None]] = set()
        self.hits = 0
        self.misses = 0

    async def bodies(self, post_ids: Sequence[int], timeout_s: float) -> dict[int, post_pb2.Post]:
        """Bodies of the posts that exist; deleted ones are simply absent. Raises TimeoutError
        when they take longer than `timeout_s`, or the fetch's error."""
        if not post_ids:
            return {}
        keys = [str(i) for i in post_ids]
        cached = await self.cache.multi_get(keys)
        found = {i: post_pb2.Post.FromString(raw)
                 for i, raw in zip(post_ids, cached, strict=True) if raw is not None}
        missing = [k for k, raw in zip(keys, cached, strict=True) if raw is None]
        self.hits += len(found)
        self.misses += len(missing)
        metrics.body_cache(len(found), len(missing))
        telemetry.current_span().set_attributes(
            {"fanline.cache.hits": len(found), "fanline.cache.misses": len(missing)}
        )
        if not missing:
            return found
        joined = [k for k in missing if k in self._inflight]
        if joined:  # fetched for a concurrent read: no BatchGetPosts of our own for them
            telemetry.current_span().set_attribute("fanline.hydrate.joined", len(joined))
        mine = [k for k in missing if k not in self._inflight]
        if mine:
            self._start_fetch(mine)
        waits = {k: self._inflight[k] for k in missing}
        _, pending = await asyncio.wait(waits.values(), timeout=timeout_s)
        if pending:
            raise TimeoutError(f"{len(pending)} bodies not fetched within {timeout_s:.3f}s")
        for key, future in waits.items():
            if future.cancelled():  # the process is stopping
                raise TimeoutError("body fetch stopped")
            post = future.result()  # the fetch's error, if it failed
            if post is not None:
                found[int(key)] = post
        return found

    def _start_fetch(self, keys: list[str]) -> None:
        loop = asyncio.get_running_loop()
        futures = {k: loop.create_future() for k in keys}
        self._inflight.update(futures)
        task = asyncio.create_task(self._fetch(futures))
        self._fetches.add(task)
        task.add_done_callback(self._fetches.discard)

    async def _fetch(self, futures: dict[str, asyncio.Future[post_pb2.Post | None]]) -> None:
        try:
            reply = await self._posts.BatchGetPosts(
                post_pb2.BatchGetPostsRequest(post_ids=list(futures)), timeout=self._fetch_limit_s
            )
            if reply.posts:
                await self.cache.multi_set([(p.post_id, p.SerializeToString())
                                            for p in reply.posts])
            by_id = {p.post_id: p for p in reply.posts}
            for key, future in futures.items():
                future.set_result(by_id.get(key))
        except asyncio.CancelledError:
            for future in futures.values():
                future.cancel()
            raise
        except Exception as exc:
            for future in futures.values():
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # marks it retrieved; each waiter re-raises it
        finally:
            for key, future in futures.items():
                if self._inflight.get(key) is future:
                    del self._inflight[key]

    async def stop(self) -> None:
        for task in list(self._fetches):
            task.cancel()
        await asyncio.gather(*self._fetches, return_exceptions=True)

    def is_cached(self, post_id: int) -> bool:
        return str(post_id) in self.cache

    async def cached(self, post_ids: Sequence[int]) -> dict[int, post_pb2.Post]:
        """Only what the cache holds (no fetch): for a page served past its budget."""
        values = await self.cache.multi_get([str(i) for i in post_ids])
        return {i: post_pb2.Post.FromString(raw)
                for i, raw in zip(post_ids, values, strict=True) if raw is not None}

    async def forget(self, post_id: str) -> None:
        await self.cache.delete(post_id)
