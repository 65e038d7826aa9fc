"""Post storage: bodies, per-author post lists, idempotent creation, deletion."""

from __future__ import annotations

import time
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp
from redis.asyncio import Redis

from services.common import keys
from services.common.errors import NotFound, PermissionDenied
from services.common.ids import PostIdGenerator, id_time
from services.gen.feed.v1 import post_pb2

REQUEST_ID_TTL_S = 24 * 3600  # retries of one CreatePost arrive within seconds; a day is ample


@dataclass(frozen=True)
class Created:
    post: post_pb2.Post
    is_new: bool


class PostStore:
    def __init__(self, redis: Redis, outbox_key: str = keys.outbox()) -> None:
        self._redis = redis
        self._ids = PostIdGenerator(redis)
        self._outbox_key = outbox_key

    async def create(self, author_id: str, text: str, request_id: str, retry_at_ms: int) -> Created:
        """Store the post and its outbox entry atomically with its index entries.

        With a request id, the body is written under a fresh id first and the request id is
        claimed second: the loser of a race (or a retry) deletes its unreferenced body and
        returns the winner's post, so a retried CreatePost is delivered once.
        """
        post_id = await self._ids.next_id()
        created = Timestamp()
        created.FromDatetime(id_time(post_id))
        post = post_pb2.Post(
            post_id=str(post_id), author_id=author_id, text=text, create_time=created
        )
        body = post.SerializeToString()
        if request_id:
            claim_key = keys.request_id(author_id, request_id)
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(keys.post(str(post_id)), body)
                pipe.set(claim_key, post_id, nx=True, ex=REQUEST_ID_TTL_S)
                _, claimed = await pipe.execute()
            if not claimed:
                await self._redis.delete(keys.post(str(post_id)))
                existing = await self._redis.get(claim_key)
                if existing is None:  # the claim expired between our two calls
                    raise NotFound("request_id: the earlier post with this request id is gone")
                return Created(await self.get(existing.decode()), is_new=False)
        async with self._redis.pipeline(transaction=True) as pipe:
            if not request_id:
                pipe.set(keys.post(str(post_id)), body)
            pipe.zadd(keys.author_posts(author_id), {str(post_id): post_id})
            pipe.zadd(self._outbox_key, {outbox_publish(str(post_id)): retry_at_ms})
            await pipe.execute()
        return Created(post, is_new=True)

    async def get(self, post_id: str) -> post_pb2.Post:
        raw = await self._redis.get(keys.post(post_id))
        if raw is None:
            raise NotFound(f"post_id: no post {post_id}")
        return post_pb2.Post.FromString(raw)

    async def batch_get(self, post_ids: list[str]) -> list[post_pb2.Post]:
        if not post_ids:
            return []
        raws = await self._redis.mget([keys.post(pid) for pid in post_ids])
        return [post_pb2.Post.FromString(raw) for raw in raws if raw is not None]

    async def delete(self, post_id: str, author_id: str, retry_at_ms: int) -> post_pb2.Post:
        post = await self.get(post_id)
        if post.author_id != author_id:
            raise PermissionDenied("author_id: only the post's author may delete it")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.post(post_id))
            pipe.zrem(keys.author_posts(author_id), post_id)
            # A publish hand-off still pending for this post is pointless now.
            pipe.zrem(self._outbox_key, outbox_publish(post_id))
            pipe.zadd(self._outbox_key, {outbox_retract(post_id, author_id): retry_at_ms})
            pipe.publish(keys.events_channel(), f"deleted {post_id} {author_id}")
            await pipe.execute()
        return post

    async def list_author_posts(
        self, author_id: str, before_id: int | None, limit: int
    ) -> tuple[list[post_pb2.Post], bool]:
        """Newest first, ids strictly below `before_id`; returns (posts, has_more)."""
        upper = f"({before_id}" if before_id is not None else "+inf"
        ids = await self._redis.zrevrangebyscore(
            keys.author_posts(author_id), upper, "-inf", start=0, num=limit + 1
        )
        has_more = len(ids) > limit
        posts = await self.batch_get([i.decode() for i in ids[:limit]])
        return posts, has_more


def outbox_publish(post_id: str) -> str:
    return f"publish:{post_id}"


def outbox_retract(post_id: str, author_id: str) -> str:
    return f"retract:{post_id}:{author_id}"


def now_ms() -> int:
    return int(time.time() * 1000)
