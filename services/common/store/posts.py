"""Posts: ids, bodies, authors' lists, request-id claims and the outbox of hand-offs.

A post lives in its author's bucket (its id names the bucket), so creating one (body, the
author's list, the outbox entry, the request-id claim) is one atomic single-slot script, and
deleting one likewise.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from fanline.common.store import records, scripts
from fanline.common.store.client import Call, StoreClient
from fanline.common.store.layout import EPOCH_MS, MAX_POST_ID, Layout, id_time
from fanline.common.store.records import Event, EventKind, HandOff, OutboxEntry
from fanline.gen.feed.v1 import post_pb2

REQUEST_ID_TTL_S = 24 * 3600  # retries of one CreatePost arrive within seconds; a day is ample


class PostIdsExhausted(OverflowError):
    """Ids would no longer fit in 53 bits (in 2093)."""


@dataclass(frozen=True)
class Created:
    post: post_pb2.Post | None  # None: the request id names an earlier post that is gone
    is_new: bool


class PostRecords:
    def __init__(self, client: StoreClient, layout: Layout) -> None:
        self._client = client
        self._layout = layout

    async def _new_id(self, bucket: int) -> int:
        raw = await self._client.run(Call(
            scripts.NEXT_POST_ID, [self._layout.last_post_id(bucket)],
            [EPOCH_MS, self._layout.buckets, bucket],
        ))
        post_id = int(raw)
        if post_id > MAX_POST_ID:
            raise PostIdsExhausted("post id space exhausted")
        return post_id

    async def create(self, author_id: str, text: str, request_id: str, due_ms: int) -> Created:
        """Store a post with its outbox entry (due at `due_ms`), atomically.

        The id is issued first, then the body is written under it by one script that also
        claims the request id: a retry of the same CreatePost (same request id) finds the
        claim and gets the earlier post back, and a retried script call writes the same id
        again, so either way the post exists once."""
        bucket = self._layout.bucket_of_user(author_id)
        post_id = await self._new_id(bucket)
        created = Timestamp()
        created.FromDatetime(id_time(post_id))
        post = post_pb2.Post(post_id=str(post_id), author_id=author_id, text=text,
                             create_time=created)
        keys = [self._layout.post(post_id), self._layout.author_posts(author_id),
                self._layout.outbox(bucket)]
        if request_id:
            keys.append(self._layout.request(author_id, request_id))
        raw = await self._client.run(Call(scripts.CREATE_POST, keys, [
            post_id, records.encode_post(post), OutboxEntry(HandOff.PUBLISH, post_id).encode(),
            due_ms, REQUEST_ID_TTL_S,
        ]), durable=True)
        if int(raw) == post_id:
            return Created(post, is_new=True)
        return Created(await self.get(int(raw)), is_new=False)

    async def get(self, post_id: int) -> post_pb2.Post | None:
        raw = await self._client.command("GET", self._layout.post(post_id))
        return records.decode_post(raw) if raw is not None else None

    async def exists(self, post_id: int) -> bool:
        return bool(await self._client.command("EXISTS", self._layout.post(post_id)))

    async def batch_get(self, post_ids: Sequence[int]) -> list[post_pb2.Post]:
        """The posts that exist, in the order asked; one MGET per bucket, all in one pipeline
        (so one round trip per node)."""
        if not post_ids:
            return []
        by_bucket: dict[int, list[int]] = defaultdict(list)
        for post_id in post_ids:
            by_bucket[self._layout.bucket_of_post(post_id)].append(post_id)
        groups = list(by_bucket.values())
        replies = await self._client.batch(
            [("MGET", *(self._layout.post(p) for p in group)) for group in groups])
        found: dict[int, bytes] = {}
        for group, raws in zip(groups, replies, strict=True):
            found.update((p, raw) for p, raw in zip(group, raws, strict=True) if raw is not None)
        return [records.decode_post(found[p]) for p in post_ids if p in found]

    async def delete(self, post: post_pb2.Post, due_ms: int) -> None:
        """Remove the body and the author's list entry, queue the retraction hand-off and tell
        timeline processes, in one script."""
        post_id = int(post.post_id)
        bucket = self._layout.bucket_of_post(post_id)
        await self._client.run(Call(
            scripts.DELETE_POST,
            [self._layout.post(post_id), self._layout.author_posts(post.author_id),
             self._layout.outbox(bucket)],
            [post_id, OutboxEntry(HandOff.PUBLISH, post_id).encode(),
             OutboxEntry(HandOff.RETRACT, post_id, post.author_id).encode(), due_ms,
             self._layout.events(bucket), Event(EventKind.DELETED, post.author_id, post_id).encode()],
        ), durable=True)

    async def author_ids(self, author_id: str, before_id: int | None, limit: int) -> list[int]:
        """An author's post ids below `before_id`, newest first."""
        return records.decode_ids(await self._client.command(
            "ZREVRANGEBYSCORE", self._layout.author_posts(author_id), records.score_below(before_id), "-inf",
            "LIMIT", 0, limit,
        ))

    async def authors_ids(self, author_ids: Sequence[str], before_id: int | None,
                          limit: int) -> list[list[int]]:
        """Several authors' lists at once (one pipeline: a round trip per node)."""
        if not author_ids:
            return []
        replies = await self._client.batch([
            ("ZREVRANGEBYSCORE", self._layout.author_posts(a), records.score_below(before_id), "-inf",
             "LIMIT", 0, limit)
            for a in author_ids
        ])
        return [records.decode_ids(r) for r in replies]

    async def authors_ids_after(self, author_ids: Sequence[str], after_id: int,
                                limit: int) -> list[list[int]]:
        """Several authors' post ids above `after_id`, oldest first (a watcher catching up)."""
        if not author_ids:
            return []
        replies = await self._client.batch([
            ("ZRANGEBYSCORE", self._layout.author_posts(a), f"({after_id}", "+inf", "LIMIT", 0, limit)
            for a in author_ids
        ])
        return [records.decode_ids(r) for r in replies]

    async def author_ids_since(self, author_id: str, floor: int) -> list[int]:
        return records.decode_ids(await self._client.command(
            "ZRANGEBYSCORE", self._layout.author_posts(author_id), floor, "+inf"))

    # -- the outbox --------------------------------------------------------------------------

    async def outbox_due(self, now_ms: int, limit_per_bucket: int) -> list[OutboxEntry]:
        """Hand-offs due by `now_ms`, from every bucket's outbox (one pipeline)."""
        buckets = range(self._layout.buckets)
        replies = await self._client.batch([
            ("ZRANGEBYSCORE", self._layout.outbox(b), "-inf", now_ms, "LIMIT", 0, limit_per_bucket)
            for b in buckets
        ])
        entries = []
        for reply in replies:
            for raw in reply:
                entry = OutboxEntry.decode(raw)
                if entry is not None:
                    entries.append(entry)
        return entries

    async def outbox_done(self, entry: OutboxEntry) -> None:
        await self._client.command(
            "ZREM", self._layout.outbox(self._layout.bucket_of_post(entry.post_id)), entry.encode())

    async def outbox_later(self, entry: OutboxEntry, due_ms: int) -> None:
        """Retry at `due_ms`, if still pending (XX: a concurrent hand-off may have ended it)."""
        await self._client.command(
            "ZADD", self._layout.outbox(self._layout.bucket_of_post(entry.post_id)), "XX",
            due_ms, entry.encode())

    async def outbox_pending(self) -> int:
        buckets = range(self._layout.buckets)
        replies = await self._client.batch([("ZCARD", self._layout.outbox(b)) for b in buckets])
        return sum(int(r) for r in replies)
