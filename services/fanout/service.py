"""The fan-out domain: follow graph, delivery modes and the queue behind one facade."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fanline.common import telemetry
from fanline.common.access import may_see_everything
from fanline.common.auth import Caller
from fanline.common.errors import NotFound, PermissionDenied
from fanline.common.store.queue import QueueStats
from fanline.common.store.records import DeliveryRecord
from fanline.fanout.graph import AuthorInfo, AuthorModes, FollowGraph
from fanline.fanout.policy import Mode
from fanline.fanout.queue import FanoutQueue


class Fanout:
    def __init__(self, graph: FollowGraph, modes: AuthorModes, queue: FanoutQueue,
                 author_of: Callable[[int], Awaitable[str | None]]) -> None:
        self.graph = graph
        self.modes = modes
        self.queue = queue
        self._author_of = author_of  # a stored post's author (None: no such post)

    async def follow(self, follower_id: str, followee_id: str) -> None:
        if await self.graph.follow(follower_id, followee_id):
            await self._backfill(followee_id)

    async def unfollow(self, follower_id: str, followee_id: str) -> None:
        if await self.graph.unfollow(follower_id, followee_id):
            await self._backfill(followee_id)

    async def author(self, user_id: str) -> AuthorInfo:
        info = await self.graph.author(user_id)
        # Report the mode the author's next post gets (a threshold change applies at once).
        mode, demoted = await self.modes.reconcile(user_id, info.follower_count,
                                                   pull=info.mode is Mode.PULL)
        if demoted:
            await self._backfill(user_id)
        return AuthorInfo(info.user_id, info.follower_count, info.following_count, mode)

    async def publish(self, post_id: int, author_id: str, created_ms: int) -> bool:
        return await self.queue.publish(post_id, author_id, created_ms,
                                        telemetry.inject_context(), telemetry.current_trace_id())

    async def retract(self, post_id: int, author_id: str) -> None:
        await self.queue.retract(post_id, author_id, telemetry.inject_context())

    async def _backfill(self, author_id: str) -> None:
        await self.queue.backfill(author_id, telemetry.inject_context())

    async def stats(self) -> QueueStats:
        return await self.queue.stats()

    async def delivery(self, post_id: int, caller: Caller | None) -> DeliveryRecord:
        """A post's delivery record: its author's to see, or an operator's."""
        if not may_see_everything(caller):
            assert caller is not None
            if await self._author_of(post_id) != caller.sub:
                # The same answer whether or not the post exists: ids are not probed this way.
                raise PermissionDenied("post_id: only the post's author (or an operator) may "
                                       "see its delivery")
        record = await self.queue.delivery(post_id)
        if record is None:
            raise NotFound(f"post_id: no delivery record for {post_id}")
        return record
