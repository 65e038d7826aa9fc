"""Hydration: post ids -> bodies, from the in-process cache first and one BatchGetPosts call
for the rest. Most reads never pay the second hop."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.cache import BoundedMemoryCache
from services.gen.feed.v1 import post_pb2, post_pb2_grpc


class Hydrator:
    def __init__(self, posts: post_pb2_grpc.PostServiceStub, size: int, ttl_s: float) -> None:
        self._posts = posts
        self.cache = BoundedMemoryCache(size, ttl=ttl_s, namespace="b:")
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
        if missing:
            reply = await self._posts.BatchGetPosts(
                post_pb2.BatchGetPostsRequest(post_ids=missing), timeout=timeout_s
            )
            if reply.posts:
                await self.cache.multi_set([(p.post_id, p) for p in reply.posts])
            found.update((int(p.post_id), p) for p in reply.posts)
        return found

    async def forget(self, post_id: str) -> None:
        await self.cache.delete(post_id)
