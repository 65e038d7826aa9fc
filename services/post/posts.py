"""The post domain: create, read, delete and list posts; hand new posts and deletions to
fan-out through the outbox."""

from __future__ import annotations

from collections.abc import Sequence

from fanline.common.clock import now_ms
from fanline.common.errors import NotFound, PermissionDenied
from fanline.common.store import Store
from fanline.common.store.records import HandOff, OutboxEntry
from fanline.gen.feed.v1 import post_pb2
from fanline.post.outbox import Outbox


class Posts:
    def __init__(self, store: Store, outbox: Outbox, retry_ms: int) -> None:
        self._store = store
        self._outbox = outbox
        self._retry_ms = retry_ms

    async def create(self, author_id: str, text: str, request_id: str) -> post_pb2.Post:
        """Store the post (with its outbox entry, atomically), then hand it to fan-out at once;
        if fan-out is away the outbox drainer retries later. A retry with the same request
        id returns the first post and hands nothing off again."""
        created = await self._store.posts.create(author_id, text, request_id,
                                                 due_ms=now_ms() + self._retry_ms)
        if created.post is None:
            raise NotFound("request_id: the earlier post with this request id is gone")
        if created.is_new:
            await self._outbox.hand_off(OutboxEntry(HandOff.PUBLISH, int(created.post.post_id)))
        return created.post

    async def get(self, post_id: int) -> post_pb2.Post:
        post = await self._store.posts.get(post_id)
        if post is None:
            raise NotFound(f"post_id: no post {post_id}")
        return post

    async def batch_get(self, post_ids: Sequence[int]) -> list[post_pb2.Post]:
        return await self._store.posts.batch_get(post_ids)

    async def delete(self, post_id: int, author_id: str) -> None:
        post = await self.get(post_id)
        if post.author_id != author_id:
            raise PermissionDenied("author_id: only the post's author may delete it")
        await self._store.posts.delete(post, due_ms=now_ms() + self._retry_ms)
        await self._outbox.hand_off(OutboxEntry(HandOff.RETRACT, post_id, author_id))

    async def list_by_author(self, author_id: str, before_id: int | None,
                             limit: int) -> tuple[list[post_pb2.Post], bool]:
        """Newest first, ids strictly below `before_id`; returns (posts, has_more)."""
        ids = await self._store.posts.author_ids(author_id, before_id, limit + 1)
        return await self._store.posts.batch_get(ids[:limit]), len(ids) > limit
