"""The follow graph and authors' delivery modes.

An edge is stored three times, each copy where its reader needs it:
- the follower's `following` set and the author's followers-in-the-follower's-bucket, written
  together by one script in the follower's bucket (fan-out batches and their follow checks,
  timelines' "whom do I follow");
- the author's `followers` set in the author's bucket (counts, listings, small fan-outs).
Follow and unfollow both change the follower's side first, then the author's. Both steps are
idempotent, so a Follow or Unfollow retried after a failure between them completes the change;
until then the two sides differ by that one edge.

Modes live in the author's bucket (pull and merged sets), so every transition is one script.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fanline.common.store import records, scripts
from fanline.common.store.client import Call, StoreClient
from fanline.common.store.layout import Layout
from fanline.common.store.records import Event, EventKind

BULK_CHUNK = 1000  # calls per pipeline of a bulk load


@dataclass(frozen=True)
class AuthorState:
    follower_count: int
    following_count: int
    pull: bool


@dataclass(frozen=True)
class FanoutStart:
    """What a fan-out's first entry reads about its author, in one round trip."""

    follower_count: int
    pull: bool
    first_followers: list[str]  # up to the asked limit, ordered by id


class GraphRecords:
    def __init__(self, client: StoreClient, layout: Layout) -> None:
        self._client = client
        self._layout = layout

    # -- edges -------------------------------------------------------------------------------

    async def add_edge(self, follower_id: str, author_id: str) -> int:
        """Store the edge; returns the author's follower count afterwards.

        The follower's side first: from then on fan-out pushes to them and timelines see the
        followee; the author's side (counts, listings) follows."""
        bucket = self._layout.bucket_of_user(follower_id)
        await self._client.run(Call(
            scripts.FOLLOW_EDGE,
            [self._layout.following(follower_id), self._layout.local_followers(bucket, author_id)],
            [author_id, follower_id],
        ), durable=True)
        followers = self._layout.followers(author_id)
        _, count = await self._client.batch(
            [("ZADD", followers, 0, follower_id), ("ZCARD", followers)])
        return int(count)

    async def add_edges(self, author_id: str, follower_ids: Sequence[str]) -> int:
        """Many followers of one author at once (bulk loads: benchmarks, imports), pipelined;
        the same writes as `add_edge`. Returns the author's follower count."""
        calls = [Call(scripts.FOLLOW_EDGE,
                      [self._layout.following(f),
                       self._layout.local_followers(self._layout.bucket_of_user(f), author_id)],
                      [author_id, f])
                 for f in follower_ids]
        for start in range(0, len(calls), BULK_CHUNK):
            await self._client.run_many(calls[start:start + BULK_CHUNK], durable=True)
        followers = self._layout.followers(author_id)
        for start in range(0, len(follower_ids), BULK_CHUNK):
            chunk = follower_ids[start:start + BULK_CHUNK]
            await self._client.command("ZADD", followers, *(x for f in chunk for x in (0, f)))
        return int(await self._client.command("ZCARD", followers))

    async def remove_edge(self, follower_id: str, author_id: str) -> tuple[bool, int, int]:
        """Remove the edge; returns (it existed, the follower's inbox floor, the author's
        follower count afterwards). The floor bounds which of the author's posts can still be
        in the follower's inbox (the caller purges them)."""
        bucket = self._layout.bucket_of_user(follower_id)
        existed, floor = await self._client.run(Call(
            scripts.UNFOLLOW_EDGE,
            [self._layout.following(follower_id), self._layout.local_followers(bucket, author_id),
             self._layout.inbox(follower_id)],
            [author_id, follower_id],
        ), durable=True)
        followers = self._layout.followers(author_id)
        _, count = await self._client.batch(
            [("ZREM", followers, follower_id), ("ZCARD", followers)])
        return bool(existed), int(float(floor)), int(count)

    async def page(self, user_id: str, direction: str, after: str | None,
                   limit: int) -> tuple[list[str], bool]:
        """Followers or following of `user_id` ordered by id, after `after`; (ids, has_more)."""
        key = (self._layout.followers(user_id) if direction == "followers"
               else self._layout.following(user_id))
        start = f"({after}" if after else "-"
        raw = await self._client.command("ZRANGE", key, start, "+", "BYLEX", "LIMIT", 0, limit + 1)
        ids = [records.text(r) for r in raw]
        return ids[:limit], len(ids) > limit

    async def following(self, user_id: str, limit: int) -> list[str]:
        raw = await self._client.command("ZRANGE", self._layout.following(user_id), 0, limit - 1)
        return [records.text(r) for r in raw]

    async def author(self, user_id: str) -> AuthorState:
        bucket = self._layout.bucket_of_user(user_id)
        followers, following, pull = await self._client.batch([
            ("ZCARD", self._layout.followers(user_id)),
            ("ZCARD", self._layout.following(user_id)),
            ("SISMEMBER", self._layout.pull_authors(bucket), user_id),
        ])
        return AuthorState(int(followers), int(following), bool(pull))

    async def fanout_start(self, author_id: str, limit: int) -> FanoutStart:
        """The author's follower count, mode, and first `limit` followers (all in the author's
        bucket: one round trip)."""
        bucket = self._layout.bucket_of_user(author_id)
        followers = self._layout.followers(author_id)
        commands: list[tuple[object, ...]] = [
            ("ZCARD", followers), ("SISMEMBER", self._layout.pull_authors(bucket), author_id)]
        if limit > 0:
            commands.append(("ZRANGE", followers, 0, limit - 1))
        count, pull, *first = await self._client.batch(commands)
        return FanoutStart(int(count), bool(pull),
                           [records.text(f) for f in first[0]] if first else [])

    async def local_followers(self, author_id: str, buckets: range, cursor: str,
                              limit: int) -> dict[int, list[str]]:
        """The author's followers in each of `buckets`, up to `limit` each, ordered by id; in the
        first bucket only those after `cursor`. Empty buckets are left out."""
        replies = await self._client.batch([
            ("ZRANGE", self._layout.local_followers(b, author_id),
             f"({cursor}" if cursor and b == buckets.start else "-", "+", "BYLEX", "LIMIT", 0, limit)
            for b in buckets
        ])
        return {b: [records.text(f) for f in reply]
                for b, reply in zip(buckets, replies, strict=True) if reply}

    # -- modes -------------------------------------------------------------------------------

    async def is_pull(self, author_id: str) -> bool:
        bucket = self._layout.bucket_of_user(author_id)
        return bool(await self._client.command(
            "SISMEMBER", self._layout.pull_authors(bucket), author_id))

    async def promote(self, author_id: str) -> None:
        """PULL from now on: timelines merge the author's list before workers stop pushing."""
        bucket = self._layout.bucket_of_user(author_id)
        await self._client.run(Call(
            scripts.PROMOTE,
            [self._layout.merged_authors(bucket), self._layout.pull_authors(bucket)],
            [author_id, self._layout.events(bucket), Event(EventKind.MODE, author_id).encode()],
        ), durable=True)

    async def demote(self, author_id: str) -> bool:
        """PUSH again (still merged until the backfill is done); True for the one caller that
        made the change, who must queue the backfill."""
        bucket = self._layout.bucket_of_user(author_id)
        return bool(await self._client.command(
            "SREM", self._layout.pull_authors(bucket), author_id))

    async def finish_demotion(self, author_id: str) -> bool:
        """Stop merging the author's list, unless they were promoted again meanwhile."""
        bucket = self._layout.bucket_of_user(author_id)
        return bool(await self._client.run(Call(
            scripts.FINISH_DEMOTION,
            [self._layout.pull_authors(bucket), self._layout.merged_authors(bucket)],
            [author_id, self._layout.events(bucket), Event(EventKind.MODE, author_id).encode()],
        ), durable=True))

    async def merged_authors(self) -> frozenset[str]:
        """Every author whose list timelines merge (one pipeline over the buckets)."""
        replies = await self._client.batch(
            [("SMEMBERS", self._layout.merged_authors(b)) for b in range(self._layout.buckets)])
        return frozenset(records.text(m) for reply in replies for m in reply)
