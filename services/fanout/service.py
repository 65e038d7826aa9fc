"""The fan-out domain: follow graph, delivery modes and the queue behind one facade."""

from __future__ import annotations

from redis.asyncio import Redis

from services.common import telemetry
from services.common.config import Settings
from services.fanout.graph import AuthorInfo, AuthorModes, FollowGraph
from services.fanout.inbox import InboxWriter
from services.fanout.queue import FanoutQueue, Job, JobKind, QueueStats


class Fanout:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.inboxes = InboxWriter(redis, settings.inbox_max)
        self.modes = AuthorModes(redis, settings.celebrity_threshold, settings.demote_ratio)
        self.graph = FollowGraph(redis, self.modes, self.inboxes)
        self.queue = FanoutQueue(redis, settings.queue_max)

    async def start(self) -> None:
        await self.queue.ensure_group()

    async def follow(self, follower_id: str, followee_id: str) -> None:
        _, demoted = await self.graph.follow(follower_id, followee_id)
        if demoted:
            await self._backfill(followee_id)

    async def unfollow(self, follower_id: str, followee_id: str) -> None:
        _, demoted = await self.graph.unfollow(follower_id, followee_id)
        if demoted:
            await self._backfill(followee_id)

    async def author(self, user_id: str) -> AuthorInfo:
        info = await self.graph.author(user_id)
        # Report the mode the author's next post gets (a threshold change applies at once).
        mode, demoted = await self.modes.reconcile(user_id, info.follower_count)
        if demoted:
            await self._backfill(user_id)
        return AuthorInfo(info.user_id, info.follower_count, info.following_count, mode)

    async def publish(self, post_id: str, author_id: str, created_ms: int) -> bool:
        job = Job(
            JobKind.POST,
            author_id=author_id,
            post_id=post_id,
            created_ms=created_ms,
            trace=telemetry.inject_context(),
        )
        return await self.queue.enqueue(job, trace_id=telemetry.current_trace_id(), new_post=True)

    async def retract(self, post_id: str, author_id: str) -> None:
        job = Job.retract(post_id, author_id, telemetry.inject_context())
        await self.queue.enqueue(job)

    async def _backfill(self, author_id: str) -> None:
        job = Job.backfill(author_id, telemetry.inject_context())
        await self.queue.enqueue_unbounded(job)

    async def stats(self) -> QueueStats:
        return await self.queue.stats()
