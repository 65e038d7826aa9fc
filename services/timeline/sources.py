"""Where timeline ids come from: the reader's inbox, pulled author lists (cached,
single-flight), and the archive of followed authors' own lists. Also the inbox rebuild for
readers returning after a while away."""

from __future__ import annotations

import asyncio
import bisect
import time

from fanline.common import metrics, telemetry
from fanline.common.cache import BoundedMemoryCache, SingleFlight, get_or_load
from fanline.common.config import PAGE_SIZE_MAX
from fanline.common.store import Store
from fanline.common.store.records import Counter

# How many of a pulled author's newest ids one cache entry holds: enough for the first pages
# of every reader; deeper pages read the store directly.
RECENT_LIST_LEN = 2 * PAGE_SIZE_MAX + 56
PULLED_CACHE_KEYS = 10_000
# Up to this many PULL authors, a read asks which of them the reader follows; beyond it, it reads
# the reader's follow set instead (see Sources.reader_state).
MERGED_LOOKUP_MAX = 256


class Sources:
    def __init__(self, store: Store, pull_ttl_s: float, load_limit_s: float) -> None:
        """`load_limit_s`: how long a store read shared by concurrent readers may take."""
        self._store = store
        self.pulled_cache = BoundedMemoryCache(PULLED_CACHE_KEYS, ttl=pull_ttl_s, namespace="pl:")
        self.merged_cache = BoundedMemoryCache(4, ttl=pull_ttl_s, namespace="ma:")
        self._pulled_loads: SingleFlight[tuple[int, ...]] = SingleFlight(load_limit_s)
        self._merged_loads: SingleFlight[frozenset[str]] = SingleFlight(load_limit_s)
        self.pulled_hits = 0
        self.pulled_misses = 0

    async def merged_authors(self) -> frozenset[str]:
        """Authors whose lists timelines merge (PULL, or demoted and still backfilling)."""
        value, _ = await get_or_load(self.merged_cache, self._merged_loads, "all",
                                     self._store.graph.merged_authors)
        return value

    async def reader_state(
        self, user_id: str, merged: frozenset[str], max_following: int
    ) -> tuple[int | None, list[str]]:
        """(last_seen unix s or None, the merged authors the reader follows, self included).

        With few merged authors, ask the store which of them the reader follows (ZMSCORE);
        with many (a low threshold makes most authors PULL), read the reader's follow set
        instead and intersect here, so the cost is bounded by what the reader follows and not
        by how many PULL authors the whole system has."""
        candidates = sorted(merged - {user_id})
        by_membership = len(candidates) <= MERGED_LOOKUP_MAX
        state = await self._store.inboxes.reader_state(
            user_id, candidates if by_membership else None, max_following)
        followed = state.followed
        if state.following is not None:
            followed = sorted(m for m in state.following if m in merged)
        if user_id in merged:
            followed.append(user_id)
        return state.seen, followed

    async def inbox(self, user_id: str, before_id: int | None, limit: int) -> list[int]:
        return await self._store.inboxes.read(user_id, before_id, limit)

    async def author_list(self, author_id: str, before_id: int | None, limit: int) -> list[int]:
        """Straight from the store: an author's ids below `before_id`, newest first."""
        return await self._store.posts.author_ids(author_id, before_id, limit)
    async def pulled(self, author_id: str, before_id: int | None, limit: int) -> list[int]:
        """A pulled author's ids below `before_id`: from the cache when it covers the range."""

        async def load() -> tuple[int, ...]:
            return tuple(await self.author_list(author_id, None, RECENT_LIST_LEN))

        recent, hit = await get_or_load(self.pulled_cache, self._pulled_loads, author_id, load)
        if hit:
            self.pulled_hits += 1
        else:
            self.pulled_misses += 1
        metrics.pulled_cache(hit)
        telemetry.current_span().set_attribute("fanline.cache.hit", hit)
        start = 0
        if before_id is not None:
            # `recent` is descending; find the first id below before_id.
            start = bisect.bisect_left(recent, -before_id + 1, key=lambda x: -x)
        chosen = list(recent[start : start + limit])
        if len(chosen) < limit and len(recent) == RECENT_LIST_LEN:
            return await self.author_list(author_id, before_id, limit)
        return chosen

    async def archive(
        self, user_id: str, before_id: int | None, limit: int, max_following: int,
        merged: frozenset[str],
    ) -> list[list[int]]:
        """Every followed author's list (and the reader's own) below `before_id`.

        Merged (PULL) authors' lists come through the shared cache like in the inbox regime,
        so readers of a celebrity do not each hit the store for it; the others are read in
        one pipeline (a round trip per node)."""
        following = await self._store.graph.following(user_id, max_following)
        authors = [user_id, *following]
        pulled = [a for a in authors if a in merged]
        direct = [a for a in authors if a not in merged]
        lists = await self._store.posts.authors_ids(direct, before_id, limit)
        lists += await asyncio.gather(*(
            telemetry.traced("timeline.pulled", {"fanline.author_id": a}, self.pulled, a, before_id,
                             limit)
            for a in pulled
        ))
        return lists

    async def forget_author(self, author_id: str) -> None:
        await self.pulled_cache.delete(author_id)

    async def forget_modes(self) -> None:
        await self.merged_cache.clear()


class InboxRebuilder:
    """Rebuilds the inbox of a reader who was inactive (so fan-out skipped them)."""

    def __init__(self, store: Store, inbox_max: int, posts_per_author: int,
                 max_following: int) -> None:
        self._store = store
        self._cap = inbox_max
        self._per_author = posts_per_author
        self._max_following = max_following

    async def rebuild(self, user_id: str, merged: frozenset[str]) -> int:
        """Returns the number of entries written.

        Marks the reader active first, so posts fanned out from now on are pushed to them;
        what was posted before is read from the followed authors' lists. Bounded work: at
        most `max_following` authors x `posts_per_author` ids, one pipeline.
        """
        await self._store.inboxes.touch([user_id], int(time.time()))
        following = await self._store.graph.following(user_id, self._max_following)
        authors = [user_id, *(a for a in following if a not in merged)]
        lists = await self._store.posts.authors_ids(authors, None, self._per_author)
        # An author cut off at posts_per_author may have older posts we did not read: keep only
        # what is complete (ids at or above the highest cut-off), so the inbox holds every
        # pushed post above its floor and older pages continue from the authors' lists.
        floor = max((ids[-1] for ids in lists if len(ids) == self._per_author), default=0)
        chosen = sorted({i for ids in lists for i in ids if i >= floor}, reverse=True)[: self._cap]
        await self._store.inboxes.rebuild(user_id, floor, chosen, self._cap)
        await self._store.queue.count_for_user(user_id, Counter.INBOX_REBUILDS, 1)
        return len(chosen)
