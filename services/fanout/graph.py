"""The follow graph and authors' delivery modes (domain rules; storage in the store layer)."""

from __future__ import annotations

from dataclasses import dataclass

from fanline.common.errors import InvalidArgument
from fanline.common.store import Store
from fanline.fanout import policy
from fanline.fanout.policy import Mode


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

    def __init__(self, store: Store, threshold: int, demote_ratio: float) -> None:
        self._store = store
        self._threshold = threshold
        self._ratio = demote_ratio

    async def mode(self, author_id: str) -> Mode:
        return Mode.PULL if await self._store.graph.is_pull(author_id) else Mode.PUSH

    async def reconcile(self, author_id: str, follower_count: int,
                        pull: bool | None = None) -> tuple[Mode, bool]:
        """Bring the author's mode in line with their follower count (`pull`: their current
        mode, when the caller already read it).

        Returns (mode, demoted): `demoted` is True for exactly one caller when the author has
        just left PULL, and that caller must enqueue the backfill."""
        if pull is None:
            pull = await self._store.graph.is_pull(author_id)
        current = Mode.PULL if pull else Mode.PUSH
        target = policy.classify(follower_count, current, self._threshold, self._ratio)
        if target == current:
            return current, False
        if target is Mode.PULL:
            await self._store.graph.promote(author_id)
            return Mode.PULL, False
        return Mode.PUSH, await self._store.graph.demote(author_id)

    async def finish_demotion(self, author_id: str) -> bool:
        """Stop merging the author's list, unless they were promoted again meanwhile."""
        return await self._store.graph.finish_demotion(author_id)


class FollowGraph:
    def __init__(self, store: Store, modes: AuthorModes, inbox_cap: int) -> None:
        self._store = store
        self._modes = modes
        self._cap = inbox_cap

    async def follow(self, follower_id: str, followee_id: str) -> bool:
        """Returns True when the followee was demoted just now (queue their backfill)."""
        if follower_id == followee_id:
            raise InvalidArgument("followee_id", "cannot follow yourself")
        count = await self._store.graph.add_edge(follower_id, followee_id)
        mode, demoted = await self._modes.reconcile(followee_id, count)
        if mode is Mode.PUSH:
            # The followee's recent posts, so the new follower's timeline has them at once
            # (idempotent, so a retried Follow completes it).
            recent = await self._store.posts.author_ids(followee_id, None, self._cap)
            await self._store.inboxes.merge(
                followee_id, recent, self._store.inboxes.group([follower_id]), self._cap, 0)
        return demoted

    async def unfollow(self, follower_id: str, followee_id: str) -> bool:
        """Purges the followee's posts from the inbox. Returns True when the followee was
        demoted just now."""
        if follower_id == followee_id:
            raise InvalidArgument("followee_id", "cannot unfollow yourself")
        _, floor, count = await self._store.graph.remove_edge(follower_id, followee_id)
        # Everything of the author's that can be in the inbox is at or above its oldest entry.
        authored = await self._store.posts.author_ids_since(followee_id, floor)
        await self._store.inboxes.remove(authored, [follower_id])
        _, demoted = await self._modes.reconcile(followee_id, count)
        return demoted

    async def page(self, user_id: str, direction: str, after: str | None,
                   limit: int) -> tuple[list[str], bool]:
        return await self._store.graph.page(user_id, direction, after, limit)

    async def author(self, user_id: str) -> AuthorInfo:
        state = await self._store.graph.author(user_id)
        mode = Mode.PULL if state.pull else Mode.PUSH
        return AuthorInfo(user_id, state.follower_count, state.following_count, mode)
