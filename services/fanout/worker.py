"""The fan-out worker: takes one batch at a time from the stream and acknowledges it only
when its inbox writes are done.

Each stream entry is one batch. Acknowledging it, deleting it (so the stream length is the
queue depth), queueing its continuation and counting its writes happen in one transaction, so
a crash leaves either the old entry pending (another worker reclaims it with XAUTOCLAIM and
redoes the batch: ZADD of an existing member is a no-op) or the continuation queued.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from services.common import keys, metrics, telemetry
from services.common.config import Settings
from services.fanout import policy
from services.fanout.graph import AuthorModes, FollowGraph
from services.fanout.inbox import InboxWriter
from services.fanout.policy import Mode
from services.fanout.queue import DeliveryState, FanoutQueue, Job, JobKind, now_ms

log = logging.getLogger(__name__)

READ_BLOCK_MS = 500  # also bounds how long a stop request waits for an idle worker
QUEUE_STATS_EVERY_S = 2.0  # how often a worker reads queue depth/pending for the gauges


@dataclass
class BatchOutcome:
    written: int = 0
    skipped: int = 0
    next_cursor: str | None = None  # None = the chain is finished
    mode: str = ""
    delivery_fields: dict[str, str | int] | None = None
    counters: dict[str, int] | None = None


class Worker:
    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        graph: FollowGraph,
        modes: AuthorModes,
        inboxes: InboxWriter,
        queue: FanoutQueue,
        name: str | None = None,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._graph = graph
        self._modes = modes
        self._inboxes = inboxes
        self._queue = queue
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self._last_claim = 0.0
        self._last_stats = 0.0
        self.batches_done = 0

    async def run(self, stop: asyncio.Event) -> None:
        await self._queue.ensure_group()
        log.info("worker %s consuming %s", self.name, keys.fanout_stream())
        while not stop.is_set():
            try:
                await self._observe_queue()
                await self.step()
            except Exception:
                log.exception("fan-out step failed; the entry stays pending and is retried")
                await asyncio.sleep(0.5)

    async def _observe_queue(self) -> None:
        """Refresh the queue gauges (their callbacks are sync, so they read what we stored)."""
        if not metrics.enabled() or time.monotonic() - self._last_stats < QUEUE_STATS_EVERY_S:
            return
        self._last_stats = time.monotonic()
        stats = await self._queue.stats()
        metrics.queue_observed(stats.depth, stats.pending, stats.reclaimed)

    async def step(self, block_ms: int = READ_BLOCK_MS) -> int:
        """Reclaim stale entries if due, then read and process at most one new entry."""
        handled = 0
        if time.monotonic() - self._last_claim >= self._settings.claim_idle_ms / 4000:
            self._last_claim = time.monotonic()
            handled += await self._reclaim()
        reply = await self._redis.xreadgroup(
            keys.FANOUT_GROUP, self.name, {keys.fanout_stream(): ">"}, count=1, block=block_ms
        )
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                await self.process(entry_id, Job.from_fields(fields))
                handled += 1
        return handled

    async def _reclaim(self) -> int:
        _next, entries, *_ = await self._redis.xautoclaim(
            keys.fanout_stream(),
            keys.FANOUT_GROUP,
            self.name,
            min_idle_time=self._settings.claim_idle_ms,
            start_id="0-0",
            count=10,
        )
        live = [(entry_id, fields) for entry_id, fields in entries if fields]
        if live:
            log.warning("reclaimed %d fan-out entries from stopped workers", len(live))
            await self._redis.hincrby(keys.fanout_stats(), "reclaimed", len(live))
        for entry_id, fields in live:
            await self.process(entry_id, Job.from_fields(fields))
        return len(live)

    async def process(self, entry_id: bytes | str, job: Job) -> BatchOutcome:
        """One stream entry, traced as a new trace linked to the publishing request."""
        message_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        with telemetry.consumer_span("fanout.process", job.trace, {
            "messaging.system": "redis",
            "messaging.destination.name": keys.fanout_stream(),
            "messaging.operation": "process",
            "messaging.operation.type": "process",
            "messaging.message.id": message_id,
            "messaging.consumer.group.name": keys.FANOUT_GROUP,
            "fanline.job.kind": job.kind.value,
            "fanline.post_id": job.post_id,
            "fanline.author_id": job.author_id,
            "fanline.batch.cursor": job.cursor,
        }) as span:
            outcome, total_writes = await self._process(entry_id, job)
            delivery = outcome.delivery_fields or {}
            span.set_attributes({
                "fanline.delivery.mode": outcome.mode,
                # Includes the author's own inbox on a post's first batch.
                "fanline.inbox.writes": outcome.written,
                "fanline.batch.last": outcome.next_cursor is None,
                "fanline.delivery.state": str(delivery.get("state", "")),
            })
            if "lag_ms" in delivery:
                span.set_attribute("fanline.fanout.lag_ms", int(delivery["lag_ms"]))
        self._record_metrics(job, outcome, total_writes)
        return outcome

    def _record_metrics(self, job: Job, outcome: BatchOutcome, total_writes: int | None) -> None:
        if job.kind is JobKind.RETRACT:
            return
        metrics.inbox_writes(outcome.written, job.kind.value)
        counters = outcome.counters or {}
        if "posts_push" in counters or "posts_pull" in counters:
            metrics.post_published(outcome.mode)
        delivery = outcome.delivery_fields or {}
        if delivery.get("state") == DeliveryState.DELIVERED and total_writes is not None:
            metrics.post_delivered(outcome.mode, total_writes, int(delivery.get("lag_ms", 0)))

    async def _process(self, entry_id: bytes | str, job: Job) -> tuple[BatchOutcome, int | None]:
        if job.kind is JobKind.POST:
            outcome = await self._post_batch(job)
        elif job.kind is JobKind.RETRACT:
            outcome = await self._retract_batch(job)
        else:
            outcome = await self._backfill_batch(job)
        if self._settings.fanout_batch_pause_ms:
            # Throttle before acknowledging: the entry stays pending meanwhile, so a worker
            # stopped during the pause leaves the batch to be reclaimed and redone.
            await asyncio.sleep(self._settings.fanout_batch_pause_ms / 1000)
        total_writes = await self._ack(entry_id, job, outcome)
        self.batches_done += 1
        return outcome, total_writes

    def _active_since(self) -> int:
        return policy.active_since(time.time(), self._settings.active_days)

    async def _post_batch(self, job: Job) -> BatchOutcome:
        post_id = int(job.post_id)
        outcome = BatchOutcome(mode=job.mode, counters={})
        first = not job.mode
        if not await self._redis.exists(keys.post(job.post_id)):
            # Deleted before (or during) its fan-out: stop here; the retraction cleans up.
            outcome.delivery_fields = {"state": DeliveryState.FAILED, "reason": "post deleted"}
            return outcome
        if first:
            follower_count = await self._redis.zcard(keys.followers(job.author_id))
            mode, demoted = await self._modes.reconcile(job.author_id, int(follower_count))
            if demoted:
                await self.enqueue_backfill(job.author_id, job.trace)
            outcome.mode = mode.name.lower()
            delivery: dict[str, str | int] = {
                "mode": int(mode),
                "targeted": int(follower_count),
                "started_ms": now_ms(),
            }
            outcome.delivery_fields = delivery
            if mode is Mode.PULL:
                outcome.counters = {"posts_pull": 1}
                delivery.update(self._finished(job))
                # Let timelines drop their cached copy of this author's list at once.
                await self._redis.publish(keys.events_channel(), f"posted {job.author_id}")
                return outcome
            outcome.counters = {"posts_push": 1}
            delivery["state"] = DeliveryState.DELIVERING
            await self._inboxes.push_own(post_id, job.author_id)
            outcome.written += 1  # the author's own inbox, counted like PUSH's followers
        with telemetry.span("fanout.batch") as batch:
            followers = await self._graph.followers_after(
                job.author_id, job.cursor, self._settings.fanout_batch_size
            )
            written, skipped = await self._inboxes.push(
                post_id, job.author_id, followers, self._active_since()
            )
            # Followers only: the author's own inbox write is on the parent span's total.
            batch.set_attributes({"fanline.batch.size": len(followers),
                                  "fanline.inbox.writes": written,
                                  "fanline.inbox.skipped_inactive": skipped})
        outcome.written += written
        outcome.skipped += skipped
        if len(followers) == self._settings.fanout_batch_size:
            outcome.next_cursor = followers[-1]
        else:
            outcome.delivery_fields = {**(outcome.delivery_fields or {}), **self._finished(job)}
        return outcome

    def _finished(self, job: Job) -> dict[str, str | int]:
        done = now_ms()
        return {
            "state": DeliveryState.DELIVERED,
            "done_ms": done,
            "lag_ms": max(0, done - job.created_ms),
        }

    async def _retract_batch(self, job: Job) -> BatchOutcome:
        outcome = BatchOutcome(mode="retract")
        if not job.cursor:
            await self._inboxes.remove([job.post_id], [job.author_id])
        with telemetry.span("fanout.batch") as batch:
            followers = await self._graph.followers_after(
                job.author_id, job.cursor, self._settings.fanout_batch_size
            )
            removed = await self._inboxes.remove([job.post_id], followers)
            batch.set_attributes({"fanline.batch.size": len(followers),
                                  "fanline.inbox.removals": removed})
        if len(followers) == self._settings.fanout_batch_size:
            outcome.next_cursor = followers[-1]
        return outcome

    async def _backfill_batch(self, job: Job) -> BatchOutcome:
        outcome = BatchOutcome(mode="backfill")
        recent = await self._inboxes.author_recent_ids(job.author_id, self._inboxes.cap)
        with telemetry.span("fanout.batch") as batch:
            followers = await self._graph.followers_after(
                job.author_id, job.cursor, self._settings.fanout_batch_size
            )
            outcome.written, outcome.skipped = await self._inboxes.merge(
                job.author_id, recent, followers, self._active_since()
            )
            batch.set_attributes({"fanline.batch.size": len(followers),
                                  "fanline.inbox.writes": outcome.written,
                                  "fanline.inbox.skipped_inactive": outcome.skipped})
        if len(followers) == self._settings.fanout_batch_size:
            outcome.next_cursor = followers[-1]
        else:
            await self._modes.finish_demotion(job.author_id)
        return outcome

    async def enqueue_backfill(self, author_id: str, trace: dict[str, str]) -> None:
        await self._queue.enqueue_unbounded(Job(JobKind.BACKFILL, author_id=author_id, trace=trace))

    async def _ack(self, entry_id: bytes | str, job: Job, outcome: BatchOutcome) -> int | None:
        """Returns the post's total inbox writes when this batch finished its delivery."""
        stream = keys.fanout_stream()
        total_at: int | None = None
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(stream, keys.FANOUT_GROUP, entry_id)
            pipe.xdel(stream, entry_id)
            if outcome.next_cursor is not None:
                pipe.xadd(stream, job.next_batch(outcome.next_cursor, outcome.mode).fields())
            counters = dict(outcome.counters or {})
            if job.kind is not JobKind.RETRACT:
                counters["inbox_writes"] = outcome.written
                counters["skipped_inactive"] = outcome.skipped
            for name, value in counters.items():
                if value:
                    pipe.hincrby(keys.fanout_stats(), name, value)
            if job.kind is JobKind.POST:
                record = keys.delivery(job.post_id)
                finishing = (outcome.delivery_fields or {}).get("state") == DeliveryState.DELIVERED
                if outcome.written or finishing:
                    total_at = len(pipe)  # its reply is the post's running total
                    pipe.hincrby(record, "writes", outcome.written)
                if outcome.delivery_fields:
                    pipe.hset(record, mapping={k: str(v) for k, v in outcome.delivery_fields.items()})
            replies = await pipe.execute()
        return int(replies[total_at]) if total_at is not None else None
