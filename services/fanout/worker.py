"""The fan-out job handler: one stream entry (a chain's first entry or one batch of
followers), its inbox writes, and its acknowledgement.

A batch is acknowledged only when its writes are done. A full bucket queues its successor
before writing (see queue.py), so while one loop's scripts run in the store another loop is
already preparing the next batch: the store, not the worker, sets the pace. A crash leaves the
entries in hand pending; another worker reclaims them and redoes them (ZADD of an existing
member is a no-op, and counting happens only at acknowledgement).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fanline.common import metrics, telemetry
from fanline.common.clock import now_ms
from fanline.common.config import Settings
from fanline.common.store import Store
from fanline.common.store.graph import FanoutStart
from fanline.common.store.queue import Acked, Entry
from fanline.common.store.records import (
    Counter,
    DeliveryState,
    DeliveryUpdate,
    Event,
    EventKind,
    Job,
    JobKind,
)
from fanline.fanout import policy
from fanline.fanout.graph import AuthorModes
from fanline.fanout.policy import Mode
from fanline.fanout.queue import Ack, FanoutQueue


@dataclass
class BatchOutcome:
    written: int = 0
    skipped: int = 0
    last: bool = True  # no batch of this chain was queued after this one
    mode: str = ""
    update: DeliveryUpdate = field(default_factory=DeliveryUpdate)
    counters: dict[Counter, int] = field(default_factory=dict)
    acked: Acked | None = None


class Worker:
    def __init__(self, store: Store, settings: Settings, modes: AuthorModes,
                 queue: FanoutQueue) -> None:
        self._store = store
        self._settings = settings
        self._modes = modes
        self._queue = queue
        self._batch = settings.fanout_batch_size
        self._cap = settings.inbox_max
        self.batches_done = 0

    async def __call__(self, entry: Entry, ack: Ack) -> BatchOutcome:
        """One stream entry, traced as a new trace linked to the publishing request."""
        job = entry.job
        with telemetry.consumer_span("fanout.process", job.trace, {
            "messaging.system": "redis",
            "messaging.destination.name": self._store.queue.stream_name(entry.partition),
            "messaging.operation": "process",
            "messaging.operation.type": "process",
            "messaging.message.id": entry.entry_id,
            "messaging.consumer.group.name": "fanout-workers",
            "fanline.job.kind": job.kind.value,
            "fanline.post_id": str(job.post_id) if job.post_id else "",
            "fanline.author_id": job.author_id,
            "fanline.batch.buckets": f"{job.buckets[0]}-{job.buckets[1]}" if job.buckets else "",
            "fanline.batch.cursor": job.cursor,
        }) as span:
            outcome = await self._process(entry)
            outcome.acked = await self._ack(ack, job, outcome)
            if outcome.acked.chain_done and job.kind is JobKind.BACKFILL:
                # Every follower inbox now holds the author's posts: stop merging their list.
                await self._modes.finish_demotion(job.author_id)
            self.batches_done += 1
            acked = outcome.acked
            done = acked.chain_done
            state = outcome.update.state or (DeliveryState.DELIVERED if done else "")
            span.set_attributes({
                "fanline.delivery.mode": outcome.mode,
                # Includes the author's own inbox on a post's first entry.
                "fanline.inbox.writes": outcome.written,
                "fanline.batch.last": outcome.last,
                "fanline.chain.done": done,
                "fanline.delivery.state": str(state),
            })
            if done and job.kind is JobKind.POST:
                span.set_attribute("fanline.fanout.lag_ms", acked.lag_ms)
        self._record_metrics(job, outcome)
        return outcome

    def _record_metrics(self, job: Job, outcome: BatchOutcome) -> None:
        acked = outcome.acked
        if job.kind is JobKind.RETRACT or not acked or not acked.counted:
            return
        metrics.inbox_writes(outcome.written, job.kind.value)
        if Counter.POSTS_PUSH in outcome.counters or Counter.POSTS_PULL in outcome.counters:
            metrics.post_published(outcome.mode)
        failed = outcome.update.state is DeliveryState.FAILED
        if job.kind is JobKind.POST and acked.chain_done and not failed:
            metrics.post_delivered(job.mode or outcome.mode, acked.total_writes, acked.lag_ms)

    async def _process(self, entry: Entry) -> BatchOutcome:
        if entry.job.kind is JobKind.POST:
            outcome = await self._post(entry)
        elif entry.job.kind is JobKind.RETRACT:
            outcome = await self._retract(entry)
        else:
            outcome = await self._backfill(entry)
        if self._settings.fanout_batch_pause_ms:
            # Throttle before acknowledging: the entry stays pending meanwhile, so a worker
            # stopped during the pause leaves the batch to be reclaimed and redone.
            await asyncio.sleep(self._settings.fanout_batch_pause_ms / 1000)
        return outcome

    async def _ack(self, ack: Ack, job: Job, outcome: BatchOutcome) -> Acked:
        """Acknowledge and count the batch in one server-side step; ends the chain if last."""
        counters = dict(outcome.counters)
        if job.kind is not JobKind.RETRACT:
            counters[Counter.INBOX_WRITES] = outcome.written
            counters[Counter.SKIPPED_INACTIVE] = outcome.skipped
        return await ack(outcome.written if job.kind is JobKind.POST else 0, counters,
                         outcome.update)

    def _active_since(self) -> int:
        return policy.active_since(time.time(), self._settings.active_days)

    # -- which followers a batch covers ------------------------------------------------------

    async def _followers(self, entry: Entry, mode: str, outcome: BatchOutcome,
                         start: FanoutStart | None = None) -> Mapping[int, Sequence[str]]:
        """This entry's followers, by bucket.

        A first entry covers a small author's whole list, and for a big one queues the first
        range of buckets. A range entry queues the next range, then covers its own buckets,
        queueing a successor for each bucket that has more followers than a batch. So a big
        fan-out has only a couple of entries queued at a time and other posts keep their turn,
        and each successor is queued before any write, so another loop can start on it at
        once."""
        job = entry.job
        buckets = self._store.layout.buckets
        if job.first:
            start = start or await self._store.graph.fanout_start(job.author_id, self._batch)
            if policy.fits_one_batch(start.follower_count, self._batch):
                return self._store.inboxes.group(start.first_followers)
            first_range = policy.bucket_ranges(start.follower_count, buckets, self._batch)[0]
            outcome.last = False
            await self._store.queue.continue_chain(entry, [job.batch(first_range, "", mode)])
            return {}
        assert job.buckets is not None
        lo, hi = job.buckets
        more: list[Job] = []
        if not job.cursor and hi < buckets:  # a range's own entry (not a bucket's successor)
            more.append(job.batch((hi, min(buckets, 2 * hi - lo)), "", mode))
        groups = await self._store.graph.local_followers(job.author_id, range(lo, hi), job.cursor,
                                                         self._batch)
        more += [job.batch((b, b + 1), followers[-1], mode)
                 for b, followers in groups.items() if len(followers) == self._batch]
        if more:
            outcome.last = False
            await self._store.queue.continue_chain(entry, more)
        return groups

    # -- the three kinds of job --------------------------------------------------------------

    async def _post(self, entry: Entry) -> BatchOutcome:
        job = entry.job
        outcome = BatchOutcome(mode=job.mode)
        if not await self._store.posts.exists(job.post_id):
            # Deleted before (or during) its fan-out: stop here; the retraction cleans up.
            outcome.update = DeliveryUpdate(state=DeliveryState.FAILED, reason="post deleted")
            return outcome
        start = None
        if job.first:
            start = await self._store.graph.fanout_start(job.author_id, self._batch)
            mode, demoted = await self._modes.reconcile(job.author_id, start.follower_count,
                                                        start.pull)
            if demoted:
                await self._queue.backfill(job.author_id, job.trace)
            outcome.mode = mode.name.lower()
            if mode is Mode.PULL:
                outcome.update = DeliveryUpdate(mode=int(mode), targeted=start.follower_count,
                                                started_ms=now_ms())
                outcome.counters = {Counter.POSTS_PULL: 1}
                # Let timelines drop their cached copy of this author's list at once.
                await self._store.publish(Event(EventKind.POSTED, job.author_id, job.post_id,
                                                trace=job.trace.get("traceparent", "")))
                return outcome
            outcome.update = DeliveryUpdate(mode=int(mode), targeted=start.follower_count,
                                            started_ms=now_ms(), state=DeliveryState.DELIVERING)
            outcome.counters = {Counter.POSTS_PUSH: 1}
            # An author always sees their own posts, whether or not they read recently.
            await self._store.inboxes.merge(
                None, [job.post_id], self._store.inboxes.group([job.author_id]), self._cap, 0,
                announce=True, trace=job.trace.get("traceparent", ""))
            outcome.written += 1  # the author's own inbox, counted like PUSH's followers
        with telemetry.span("fanout.batch") as batch:
            groups = await self._followers(entry, outcome.mode, outcome, start)
            written, skipped = await self._store.inboxes.push(
                job.post_id, job.author_id, groups, self._cap, self._active_since(),
                job.trace.get("traceparent", ""))
            # Followers only: the author's own inbox write is on the parent span's total.
            batch.set_attributes({"fanline.batch.size": sum(len(g) for g in groups.values()),
                                  "fanline.batch.calls": len(groups),
                                  "fanline.inbox.writes": written,
                                  "fanline.inbox.skipped_inactive": skipped})
        outcome.written += written
        outcome.skipped += skipped
        return outcome

    async def _retract(self, entry: Entry) -> BatchOutcome:
        job = entry.job
        outcome = BatchOutcome(mode="retract")
        if job.first:
            await self._store.inboxes.remove([job.post_id], [job.author_id])
        with telemetry.span("fanout.batch") as batch:
            groups = await self._followers(entry, outcome.mode, outcome)
            removed = await self._store.inboxes.remove(
                [job.post_id], [f for followers in groups.values() for f in followers])
            batch.set_attributes({"fanline.batch.size": sum(len(g) for g in groups.values()),
                                  "fanline.inbox.removals": removed})
        return outcome

    async def _backfill(self, entry: Entry) -> BatchOutcome:
        job = entry.job
        outcome = BatchOutcome(mode="backfill")
        recent = await self._store.posts.author_ids(job.author_id, None, self._cap)
        with telemetry.span("fanout.batch") as batch:
            groups = await self._followers(entry, outcome.mode, outcome)
            outcome.written, outcome.skipped = await self._store.inboxes.merge(
                job.author_id, recent, groups, self._cap, self._active_since())
            batch.set_attributes({"fanline.batch.size": sum(len(g) for g in groups.values()),
                                  "fanline.inbox.writes": outcome.written,
                                  "fanline.inbox.skipped_inactive": outcome.skipped})
        return outcome
