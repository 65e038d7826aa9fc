"""Inboxes: the fan-out writes (push, merge, remove), reads, and the rebuild of a returning
reader's inbox. Every call covers users of one bucket, so it is one script in one slot."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fanline.common.clock import now_ms
from fanline.common.store import records, scripts
from fanline.common.store.client import Call, StoreClient
from fanline.common.store.layout import Layout
from fanline.common.store.records import NO_TRACE


@dataclass(frozen=True)
class ReaderState:
    seen: int | None  # unix s of the latest read; None = never read
    followed: list[str]  # of the candidates asked about, those the reader follows
    following: list[str] | None  # when no candidates were given: the reader's follow list


class InboxRecords:
    def __init__(self, client: StoreClient, layout: Layout) -> None:
        self._client = client
        self._layout = layout

    def group(self, user_ids: Sequence[str]) -> dict[int, list[str]]:
        """Users grouped by bucket: one script call per group."""
        groups: dict[int, list[str]] = defaultdict(list)
        for user_id in user_ids:
            groups[self._layout.bucket_of_user(user_id)].append(user_id)
        return groups

    async def push(self, post_id: int, author_id: str, groups: Mapping[int, Sequence[str]],
                   cap: int, active_since: int, trace: str = "") -> tuple[int, int]:
        """Add one post to the inboxes of the author's followers in `groups` (bucket ->
        followers) that are active and still follow; returns (written, skipped_inactive).
        Live watchers of those inboxes are told (`trace`: the publisher's traceparent)."""
        now = now_ms()
        calls = [
            Call(scripts.PUSH,
                 [self._layout.local_followers(bucket, author_id), self._layout.watchers(bucket),
                  *self._layout.inbox_and_seen(bucket, list(followers))],
                 [post_id, cap, active_since, now, self._layout.events(bucket),
                  trace or NO_TRACE, *followers])
            for bucket, followers in groups.items() if followers
        ]
        results = await self._client.run_many(calls, durable=True)
        return sum(int(r[0]) for r in results), sum(int(r[1]) for r in results)

    async def merge(self, author_id: str | None, post_ids_newest_first: Sequence[int],
                    groups: Mapping[int, Sequence[str]], cap: int,
                    active_since: int, announce: bool = False, trace: str = "") -> tuple[int, int]:
        """Backfill posts into inboxes (a follow, a demotion to PUSH, an author's own post).
        With `author_id`, only followers still following them; returns (written, skipped).
        `announce`: tell live watchers (an author's own new post; not old posts backfilled)."""
        if not post_ids_newest_first:
            return 0, 0
        now = now_ms()
        calls = []
        for bucket, users in groups.items():
            if not users:
                continue
            edges = [self._layout.local_followers(bucket, author_id)] if author_id else []
            calls.append(Call(
                scripts.MERGE,
                [self._layout.watchers(bucket), *edges,
                 *self._layout.inbox_and_seen(bucket, list(users))],
                ["1" if author_id else "0", cap, active_since, len(users), now,
                 self._layout.events(bucket), trace or NO_TRACE, "1" if announce else "0",
                 *users, *post_ids_newest_first],
            ))
        results = await self._client.run_many(calls, durable=True)
        return sum(int(r[0]) for r in results), sum(int(r[1]) for r in results)

    async def remove(self, post_ids: Sequence[int], owners: Sequence[str]) -> int:
        """Remove posts from the inboxes of `owners` (their live watchers are told); returns
        the entries removed."""
        if not post_ids or not owners:
            return 0
        now = now_ms()
        calls = [Call(scripts.REMOVE,
                      [self._layout.watchers(bucket), *(self._layout.inbox(u) for u in users)],
                      [now, self._layout.events(bucket), *users, *post_ids])
                 for bucket, users in self.group(owners).items()]
        return sum(int(r) for r in await self._client.run_many(calls, durable=True))

    # -- live watchers (WatchTimeline) -------------------------------------------------------

    async def watch(self, user_ids: Sequence[str], until_ms: int) -> None:
        """Mark users as watched until `until_ms` (the inbox scripts announce their changes
        meanwhile); expired marks of the same buckets are dropped. One call per bucket."""
        now = now_ms()
        commands: list[tuple[object, ...]] = []
        for bucket, users in self.group(user_ids).items():
            key = self._layout.watchers(bucket)
            commands.append(("ZADD", key, "GT", *(x for u in users for x in (until_ms, u))))
            commands.append(("ZREMRANGEBYSCORE", key, "-inf", f"({now}"))
        if commands:
            await self._client.batch(commands)

    async def since(self, user_id: str, after_id: int, limit: int) -> list[int]:
        """Inbox ids above `after_id`, oldest first (a watcher catching up)."""
        return records.decode_ids(await self._client.command(
            "ZRANGEBYSCORE", self._layout.inbox(user_id), f"({after_id}", "+inf",
            "LIMIT", 0, limit))

    async def read(self, user_id: str, before_id: int | None, limit: int) -> list[int]:
        return records.decode_ids(await self._client.command(
            "ZREVRANGEBYSCORE", self._layout.inbox(user_id), records.score_below(before_id), "-inf",
            "LIMIT", 0, limit))

    async def all_ids(self, user_id: str) -> list[int]:
        """The whole inbox, newest first (tests, tools)."""
        return records.decode_ids(
            await self._client.command("ZREVRANGE", self._layout.inbox(user_id), 0, -1))

    async def reader_state(self, user_id: str, candidates: Sequence[str] | None,
                           max_following: int) -> ReaderState:
        """The reader's activity stamp, and which of `candidates` they follow (ZMSCORE), or,
        with `candidates` None, their follow list (first `max_following`): one round trip,
        since all of it is in the reader's bucket."""
        following = self._layout.following(user_id)
        commands: list[tuple[object, ...]] = [("GET", self._layout.seen(user_id))]
        if candidates:
            commands.append(("ZMSCORE", following, *candidates))
        elif candidates is None:
            commands.append(("ZRANGE", following, 0, max_following - 1))
        seen, *rest = await self._client.batch(commands)
        stamp = int(seen) if seen is not None else None
        if candidates:
            return ReaderState(stamp, [a for a, s in zip(candidates, rest[0], strict=True)
                                       if s is not None], None)
        if candidates is None:
            return ReaderState(stamp, [], [records.text(f) for f in rest[0]])
        return ReaderState(stamp, [], None)

    async def touch(self, user_ids: Sequence[str], now_s: int) -> None:
        """Mark users as having read now (fan-out pushes to them from here on)."""
        await self._client.batch([("SET", self._layout.seen(u), now_s) for u in user_ids])

    async def rebuild(self, user_id: str, floor: int, post_ids: Sequence[int], cap: int) -> int:
        """Replace the inbox's entries at or above `floor` with `post_ids` (and drop older
        ones), capped; returns the inbox size."""
        return int(await self._client.run(Call(
            scripts.REBUILD_INBOX, [self._layout.inbox(user_id)], [floor, cap, *post_ids]),
            durable=True))

    async def tidy(self, user_id: str, gone: Sequence[int]) -> None:
        """Drop ids of deleted posts that a read found in the inbox."""
        if gone:
            await self._client.command("ZREM", self._layout.inbox(user_id), *gone)
