"""The fan-out worker: takes batches from the stream, writes inboxes, and acknowledges each
batch only when its writes are done.

A worker runs FANLINE_WORKER_CONCURRENCY consume loops. A full batch queues its successor before
writing (see queue.py), so while one loop's script runs in the store another loop is already
preparing the next batch: the store, not the worker, sets the pace. A crash leaves the entries
in hand pending; another worker reclaims them with XAUTOCLAIM and redoes them (ZADD of an
existing member is a no-op, and counting happens only at acknowledgement).
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
from services.fanout.queue import Acked, DeliveryState, FanoutQueue, Job, JobKind, now_ms

log = logging.getLogger(__name__)

READ_BLOCK_MS = 500  # also bounds how long a stop request waits for an idle worker
QUEUE_STATS_EVERY_S = 2.0  # how often a worker reads queue depth/pending for the gauges


@dataclass
class BatchOutcome:
    written: int = 0
    skipped: int = 0
    next_cursor: str | None = None  # None = no batch after this one
    mode: str = ""
    delivery_fields: dict[str, str | int] | None = None
    counters: dict[str, int] | None = None
    acked: Acked | None = None


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
        loops = self._settings.worker_concurrency
        log.info("worker %s consuming %s with %d loops", self.name, keys.fanout_stream(), loops)
        await asyncio.gather(*(self._consume(stop) for _ in range(loops)))

    async def _consume(self, stop: asyncio.Event) -> None:
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
            outcome = await self._process(entry_id, job)
            acked = outcome.acked
            done = bool(acked and acked.chain_done)
            delivery = outcome.delivery_fields or {}
            state = DeliveryState.DELIVERED if done and delivery.get("state") is None \
                else delivery.get("state", "")
            span.set_attributes({
                "fanline.delivery.mode": outcome.mode,
                # Includes the author's own inbox on a post's first batch.
                "fanline.inbox.writes": outcome.written,
                "fanline.batch.last": outcome.next_cursor is None,
                "fanline.chain.done": done,
                "fanline.delivery.state": str(state),
            })
            if done and acked and job.kind is JobKind.POST:
                span.set_attribute("fanline.fanout.lag_ms", acked.lag_ms)
        self._record_metrics(job, outcome)
        return outcome

    def _record_metrics(self, job: Job, outcome: BatchOutcome) -> None:
        acked = outcome.acked
        if job.kind is JobKind.RETRACT or not acked or not acked.counted:
            return
        metrics.inbox_writes(outcome.written, job.kind.value)
        counters = outcome.counters or {}
        if "posts_push" in counters or "posts_pull" in counters:
            metrics.post_published(outcome.mode)
        failed = (outcome.delivery_fields or {}).get("state") == DeliveryState.FAILED
        if job.kind is JobKind.POST and acked.chain_done and not failed:
            metrics.post_delivered(job.mode or outcome.mode, acked.total_writes, acked.lag_ms)

    async def _process(self, entry_id: bytes | str, job: Job) -> BatchOutcome:
        if job.kind is JobKind.POST:
            outcome = await self._post_batch(entry_id, job)
        elif job.kind is JobKind.RETRACT:
            outcome = await self._retract_batch(entry_id, job)
        else:
            outcome = await self._backfill_batch(entry_id, job)
        if self._settings.fanout_batch_pause_ms:
            # Throttle before acknowledging: the entry stays pending meanwhile, so a worker
            # stopped during the pause leaves the batch to be reclaimed and redone.
            await asyncio.sleep(self._settings.fanout_batch_pause_ms / 1000)
        outcome.acked = await self._ack(entry_id, job, outcome)
        if outcome.acked.chain_done and job.kind is JobKind.BACKFILL:
            # Every follower inbox now holds the author's posts: stop merging their list.
            await self._modes.finish_demotion(job.author_id)
        self.batches_done += 1
        return outcome

    def _active_since(self) -> int:
        return policy.active_since(time.time(), self._settings.active_days)

    async def _next_followers(self, entry_id: bytes | str, job: Job, mode: str,
                              outcome: BatchOutcome) -> list[str]:
        """This batch's followers; when the batch is full, its successor is queued at once so
        another loop (or worker) can start on it while this one writes."""
        followers = await self._graph.followers_after(
            job.author_id, job.cursor, self._settings.fanout_batch_size
        )
        if len(followers) == self._settings.fanout_batch_size:
            outcome.next_cursor = followers[-1]
            await self._queue.continue_chain(entry_id, job.next_batch(followers[-1], mode))
        return followers

    async def _post_batch(self, entry_id: bytes | str, job: Job) -> BatchOutcome:
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
                # Let timelines drop their cached copy of this author's list at once.
                await self._redis.publish(keys.events_channel(), f"posted {job.author_id}")
                return outcome
            outcome.counters = {"posts_push": 1}
            delivery["state"] = DeliveryState.DELIVERING
            await self._inboxes.push_own(post_id, job.author_id)
            outcome.written += 1  # the author's own inbox, counted like PUSH's followers
        with telemetry.span("fanout.batch") as batch:
            followers = await self._next_followers(entry_id, job, outcome.mode, outcome)
            written, skipped = await self._inboxes.push(
                post_id, job.author_id, followers, self._active_since()
            )
            # Followers only: the author's own inbox write is on the parent span's total.
            batch.set_attributes({"fanline.batch.size": len(followers),
                                  "fanline.inbox.writes": written,
                                  "fanline.inbox.skipped_inactive": skipped})
        outcome.written += written
        outcome.skipped += skipped
        return outcome

    async def _retract_batch(self, entry_id: bytes | str, job: Job) -> BatchOutcome:
        outcome = BatchOutcome(mode="retract")
        if not job.cursor:
            await self._inboxes.remove([job.post_id], [job.author_id])
        with telemetry.span("fanout.batch") as batch:
            followers = await self._next_followers(entry_id, job, outcome.mode, outcome)
            removed = await self._inboxes.remove([job.post_id], followers)
            batch.set_attributes({"fanline.batch.size": len(followers),
                                  "fanline.inbox.removals": removed})
        return outcome

    async def _backfill_batch(self, entry_id: bytes | str, job: Job) -> BatchOutcome:
        outcome = BatchOutcome(mode="backfill")
        recent = await self._inboxes.author_recent_ids(job.author_id, self._inboxes.cap)
        with telemetry.span("fanout.batch") as batch:
            followers = await self._next_followers(entry_id, job, outcome.mode, outcome)
            outcome.written, outcome.skipped = await self._inboxes.merge(
                job.author_id, recent, followers, self._active_since()
            )
            batch.set_attributes({"fanline.batch.size": len(followers),
                                  "fanline.inbox.writes": outcome.written,
                                  "fanline.inbox.skipped_inactive": outcome.skipped})
        return outcome

    async def enqueue_backfill(self, author_id: str, trace: dict[str, str]) -> None:
        await self._queue.enqueue_unbounded(Job.backfill(author_id, trace))

    async def _ack(self, entry_id: bytes | str, job: Job, outcome: BatchOutcome) -> Acked:
        """Acknowledge and count the batch in one server-side step; ends the chain if last."""
        counters = dict(outcome.counters or {})
        if job.kind is not JobKind.RETRACT:
            counters["inbox_writes"] = outcome.written
            counters["skipped_inactive"] = outcome.skipped
        return await self._queue.ack(
            entry_id, job, outcome.written if job.kind is JobKind.POST else 0, counters,
            outcome.delivery_fields or {},
        )
