"""The follow graph and authors' delivery modes."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from services.common import keys
from services.common.errors import InvalidArgument
from services.common.redis import register_script
from services.fanout import policy
from services.fanout.inbox import InboxWriter
from services.fanout.policy import Mode

# KEYS[1] = pull authors, KEYS[2] = merged authors (same hash tag). ARGV[1] = author,
# ARGV[2] = events channel. Returns 1 if the author stopped being merged, 0 if they are PULL.
_FINISH_DEMOTION = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], 'mode ' .. ARGV[1])
return 1
"""


@dataclass(frozen=True)
class AuthorInfo:
    user_id: str
    follower_count: int
    following_count: int
    mode: Mode


class AuthorModes:
    """Which authors are PULL, with hysteresis, and the transitions between modes.

    Promotion adds the author to the merged set (timelines start reading their list) before
    the pull set (workers stop pushing). Demotion removes them from the pull set (new posts are
    pushed again) but keeps them merged until a backfill job has copied their recent posts into
    follower inboxes; the worker finishing that job calls `finish_demotion`. At every moment a
    post is reachable through the inbox, the merged list, or both: it never flickers.
    """

    def __init__(self, redis: Redis, threshold: int, demote_ratio: float) -> None:
        self._redis = redis
        self._threshold = threshold
        self._ratio = demote_ratio
        self._finish = register_script(redis, _FINISH_DEMOTION)

    async def mode(self, author_id: str) -> Mode:
        pull = await self._redis.sismember(keys.pull_authors(), author_id)
        return Mode.PULL if pull else Mode.PUSH

    async def reconcile(self, author_id: str, follower_count: int) -> tuple[Mode, bool]:
        """Bring the author's mode in line with their follower count.

        Returns (mode, demoted): `demoted` is True for exactly one caller when the author has
        just left PULL, and that caller must enqueue the backfill."""
        current = await self.mode(author_id)
        target = policy.classify(follower_count, current, self._threshold, self._ratio)
        if target == current:
            return current, False
        if target is Mode.PULL:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.sadd(keys.merged_authors(), author_id)
                pipe.sadd(keys.pull_authors(), author_id)
                pipe.publish(keys.events_channel(), f"mode {author_id}")
                await pipe.execute()
            return Mode.PULL, False
        removed = await self._redis.srem(keys.pull_authors(), author_id)
        return Mode.PUSH, bool(removed)

    async def finish_demotion(self, author_id: str) -> bool:
        """Stop merging the author's list, unless they were promoted again meanwhile."""
        done = await self._finish(
            keys=[keys.pull_authors(), keys.merged_authors()],
            args=[author_id, keys.events_channel()],
        )
        return bool(done)


class FollowGraph:
    def __init__(self, redis: Redis, modes: AuthorModes, inboxes: InboxWriter) -> None:
        self._redis = redis
        self._modes = modes
        self._inboxes = inboxes

    async def follow(self, follower_id: str, followee_id: str) -> tuple[bool, bool]:
        """Returns (newly_followed, demoted_now)."""
        if follower_id == followee_id:
            raise InvalidArgument("followee_id", "cannot follow yourself")
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.following(follower_id), {followee_id: 0})
            pipe.zadd(keys.followers(followee_id), {follower_id: 0})
            pipe.zcard(keys.followers(followee_id))
            _, added, count = await pipe.execute()
        mode, demoted = await self._modes.reconcile(followee_id, int(count))
        if added and mode is Mode.PUSH:
            recent = await self._inboxes.author_recent_ids(followee_id, self._inboxes.cap)
            await self._inboxes.merge(followee_id, recent, [follower_id], active_since=0)
        return bool(added), demoted

    async def unfollow(self, follower_id: str, followee_id: str) -> tuple[bool, bool]:
        """Returns (was_following, demoted_now). Purges the author's posts from the inbox."""
        if follower_id == followee_id:
            raise InvalidArgument("followee_id", "cannot unfollow yourself")
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(keys.following(follower_id), followee_id)
            pipe.zrem(keys.followers(followee_id), follower_id)
            pipe.zcard(keys.followers(followee_id))
            pipe.zrange(keys.inbox(follower_id), 0, 0, withscores=True)
            removed, _, count, oldest = await pipe.execute()
        # Everything of the author's that can be in the inbox is at or above its oldest entry.
        floor = int(oldest[0][1]) if oldest else 0
        authored = await self._redis.zrangebyscore(keys.author_posts(followee_id), floor, "+inf")
        await self._inboxes.remove(authored, [follower_id])
        _, demoted = await self._modes.reconcile(followee_id, int(count))
        return bool(removed), demoted

    async def page(
        self, user_id: str, direction: str, after: str | None, limit: int
    ) -> tuple[list[str], bool]:
        """Followers or following of `user_id` ordered by id, after `after`; (ids, has_more)."""
        key = keys.followers(user_id) if direction == "followers" else keys.following(user_id)
        start = f"({after}" if after else "-"
        raw = await self._redis.zrange(key, start, "+", bylex=True, offset=0, num=limit + 1)
        ids = [r.decode() for r in raw]
        return ids[:limit], len(ids) > limit

    async def followers_after(self, author_id: str, after: str, limit: int) -> list[str]:
        ids, _ = await self.page(author_id, "followers", after or None, limit)
        return ids

    async def author(self, user_id: str) -> AuthorInfo:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.followers(user_id))
            pipe.zcard(keys.following(user_id))
            pipe.sismember(keys.pull_authors(), user_id)
            followers, following, pull = await pipe.execute()
        return AuthorInfo(user_id, int(followers), int(following), Mode.PULL if pull else Mode.PUSH)
