"""Inbox writes: the server-side scripts that fan-out, backfill, purge and rebuild use.

A batch of ~1,000 followers goes to the store as one script call: one round trip, and the
per-follower work (activity check, follow check, ZADD, trim) runs at the store's speed.
KEYS are grouped per follower and all carry that follower's hash tag, so in a cluster a batch
can be split by slot without changing the scripts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from redis.asyncio import Redis

from services.common import keys
from services.common.redis import register_script

# KEYS: per follower, (inbox, last_seen, following) in that order.
# ARGV[1] = post id (member and score), ARGV[2] = author id, ARGV[3] = inbox cap,
# ARGV[4] = active-since (unix s; a follower whose last read is older, or who never read, is
#           skipped: their inbox is rebuilt when they return).
# A follower who no longer follows the author (unfollowed while this batch was queued) is
# skipped too, so an unfollow purge cannot be undone by an in-flight batch.
# Returns {written, skipped_inactive}. `written` counts inboxes that now hold the post, whether
# or not this call added it: a batch re-run after a crash (its first run wrote but was never
# acknowledged, so never counted) is then counted exactly once, and ZADD of an existing
# member keeps the entry single.
PUSH = """
local id, author, cap, since = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local written, skipped = 0, 0
for i = 1, #KEYS, 3 do
  local seen = redis.call('GET', KEYS[i + 1])
  if seen and tonumber(seen) >= since then
    if redis.call('ZSCORE', KEYS[i + 2], author) then
      redis.call('ZADD', KEYS[i], id, id)
      written = written + 1
      if redis.call('ZCARD', KEYS[i]) > cap then
        redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -(cap + 1))
      end
    end
  else
    skipped = skipped + 1
  end
end
return {written, skipped}
"""

# KEYS: per follower, (inbox, last_seen, following).
# ARGV[1] = author id, ARGV[2] = inbox cap, ARGV[3] = active-since (0 = everyone),
# ARGV[4..] = the author's post ids, newest first.
# Adds the ids an inbox lacks, but only down to the inbox's floor when it is full: an inbox
# must hold every pushed post above its oldest entry (the timeline relies on it to know when
# to continue from authors' own lists), and posts below a full inbox's floor would be trimmed
# straight away anyway. Returns {written, skipped_inactive}.
MERGE = """
local author, cap, since = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local written, skipped = 0, 0
for i = 1, #KEYS, 3 do
  local seen = redis.call('GET', KEYS[i + 1])
  if since == 0 or (seen and tonumber(seen) >= since) then
    if author == '' or redis.call('ZSCORE', KEYS[i + 2], author) then
      local floor = 0
      if redis.call('ZCARD', KEYS[i]) >= cap then
        local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
        floor = tonumber(oldest[2])
      end
      for j = 4, #ARGV do
        local id = tonumber(ARGV[j])
        if id <= floor then break end
        written = written + redis.call('ZADD', KEYS[i], ARGV[j], ARGV[j])
      end
      if redis.call('ZCARD', KEYS[i]) > cap then
        redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -(cap + 1))
      end
    end
  else
    skipped = skipped + 1
  end
end
return {written, skipped}
"""

# KEYS: inboxes. ARGV: post ids to remove from each. Returns entries removed.
REMOVE = """
local removed = 0
for i = 1, #KEYS do
  removed = removed + redis.call('ZREM', KEYS[i], unpack(ARGV))
end
return removed
"""


def follower_keys(follower_ids: Iterable[str]) -> list[str]:
    return keys.fanout_write_keys(list(follower_ids))


class InboxWriter:
    def __init__(self, redis: Redis, inbox_max: int) -> None:
        self._redis = redis
        self._cap = inbox_max
        self._push = register_script(redis, PUSH)
        self._merge = register_script(redis, MERGE)
        self._remove = register_script(redis, REMOVE)

    @property
    def cap(self) -> int:
        return self._cap

    async def push(
        self, post_id: int, author_id: str, followers: Sequence[str], active_since: int
    ) -> tuple[int, int]:
        """Add one post to the inboxes of `followers`; returns (written, skipped_inactive)."""
        if not followers:
            return 0, 0
        written, skipped = await self._push(
            keys=follower_keys(followers), args=[post_id, author_id, self._cap, active_since]
        )
        return int(written), int(skipped)

    async def push_own(self, post_id: int, author_id: str) -> int:
        """An author always sees their own posts, whether or not they read recently."""
        written, _ = await self._merge(
            keys=follower_keys([author_id]), args=["", self._cap, 0, post_id]
        )
        return int(written)

    async def merge(
        self,
        author_id: str,
        post_ids_newest_first: Sequence[int],
        followers: Sequence[str],
        active_since: int,
    ) -> tuple[int, int]:
        """Backfill an author's posts into followers' inboxes (follow, or demotion to PUSH)."""
        if not followers or not post_ids_newest_first:
            return 0, 0
        written, skipped = await self._merge(
            keys=follower_keys(followers),
            args=[author_id, self._cap, active_since, *post_ids_newest_first],
        )
        return int(written), int(skipped)

    async def remove(self, post_ids: Sequence[int | str], inbox_owners: Sequence[str]) -> int:
        if not post_ids or not inbox_owners:
            return 0
        return int(
            await self._remove(keys=[keys.inbox(u) for u in inbox_owners], args=list(post_ids))
        )

    async def author_recent_ids(self, author_id: str, limit: int) -> list[int]:
        raw = await self._redis.zrevrange(keys.author_posts(author_id), 0, limit - 1)
        return [int(x) for x in raw]
