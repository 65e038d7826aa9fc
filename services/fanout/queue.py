"""The durable fan-out queue: partitioned Redis Streams read by a consumer group of workers.

Producers (the fan-out service) queue a chain's first entry. A post's fan-out is not one job
but a chain: its first entry decides the mode and, for a big author, queues one entry per range
of follower buckets; a bucket with more followers than a batch continues in further entries.
So a 100k-follower post takes its turn batch by batch, interleaved with everybody else's
posts, and its batches can be written by several workers (or one worker's concurrent loops)
at once, keeping the store busy.

Every chain has a record (for a post, its delivery record) counting its open batches: +n when
batches are queued, -1 when one is acknowledged. The acknowledgement that brings it to zero
ends the chain. A batch re-run after a crash queues no second set of continuations (a
per-entry marker) and an entry acknowledged twice (a slow worker and its reclaimer) is counted
once (XACK says so).

The consumer side (`Consumer`) owns the loop: one reader per partition, reclaiming entries
that stopped workers held, handing each entry to the job handler with the means to ack it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import redis.exceptions as rx

from fanline.common import metrics
from fanline.common.errors import ResourceExhausted
from fanline.common.store import Store, is_outage
from fanline.common.store.queue import Acked, Entry, QueueStats
from fanline.common.store.records import Counter, DeliveryRecord, DeliveryUpdate, Job, JobKind

log = logging.getLogger(__name__)

READ_BLOCK_MS = 500  # also bounds how long a stop request waits for an idle reader
QUEUE_STATS_EVERY_S = 2.0  # how often a worker reads queue depth/pending for the gauges
RECLAIM_BATCH = 10
RECOVER_EVERY_S = 1.0
OWN_STALL_MS = 3000  # an own entry untouched this long was never received (or is stuck)
HEARTBEAT_S = 1.0  # a worker says it is alive this often ...
HEARTBEAT_TTL_MS = 3000  # ... and is taken for stopped this long after its last word
TAKEOVER_EVERY_S = 1.0  # how often each partition's consumers are checked for stopped ones
TAKEOVER_MIN_IDLE_MS = 1000  # entries claimed from a stopped worker have been idle this long
RETRY_PAUSE_S = 0.5


class FanoutQueue:
    """What the fan-out service queues, and what it reads back."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def publish(self, post_id: int, author_id: str, created_ms: int,
                      trace: dict[str, str], trace_id: str) -> bool:
        """Queue a post's fan-out; False if it was queued before (a repeated hand-off).

        Raises ResourceExhausted when its partition is at its bound."""
        job = Job(JobKind.POST, author_id, post_id, created_ms, trace=trace)
        result = await self._store.queue.enqueue(job, bounded=True, trace_id=trace_id,
                                                 new_post=True)
        if result == -1:
            raise ResourceExhausted(
                "fan-out queue is full "
                f"({self._store.queue.partition_bound} entries in this post's partition); "
                "the hand-off will be retried"
            )
        return result == 1

    async def retract(self, post_id: int, author_id: str, trace: dict[str, str]) -> None:
        result = await self._store.queue.enqueue(Job.retract(post_id, author_id, trace),
                                                 bounded=True)
        if result == -1:
            raise ResourceExhausted("fan-out queue is full; the retraction will be retried")

    async def backfill(self, author_id: str, trace: dict[str, str]) -> None:
        """Follow-up work that must not be refused (a demotion's backfill): never bounded."""
        await self._store.queue.enqueue(Job.backfill(author_id, trace), bounded=False)

    async def stats(self) -> QueueStats:
        return await self._store.queue.stats()

    async def delivery(self, post_id: int) -> DeliveryRecord | None:
        return await self._store.queue.delivery(post_id)


Ack = Callable[[int, Mapping[Counter, int], DeliveryUpdate], Awaitable[Acked]]
Handler = Callable[[Entry, Ack], Awaitable[object]]


class Consumer:
    """Reads every partition (one reader each) and hands entries to `handler`, at most
    `concurrency` at once. A handler that fails leaves its entry pending: it is retried here
    while the store is unavailable, and otherwise reclaimed after `claim_idle_ms`."""

    def __init__(self, store: Store, handler: Handler, name: str, concurrency: int,
                 claim_idle_ms: int) -> None:
        self._store = store
        self._handler = handler
        self.name = name
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._claim_idle_ms = claim_idle_ms
        self._last_claim: dict[int, float] = {}
        self._last_recover: dict[int, float] = {}
        self._last_takeover: dict[int, float] = {}
        self._in_flight: set[tuple[int, str]] = set()
        self._last_stats = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._groups_ready = False
        self.handled = 0

    async def _read(self, partition: int, block_ms: int | None) -> list[Entry]:
        """Entries of stopped workers and reclaimed ones, then at most one new one. The
        consumer groups are made on first use, and again if the store lost them (a store
        restarted empty)."""
        if not self._groups_ready:
            await self._store.queue.ensure_groups()
            self._groups_ready = True
        try:
            entries = (await self._take_over(partition) + await self._reclaim(partition)
                       + await self._recover(partition))
            return entries + await self._store.queue.read(partition, self.name, block_ms)
        except rx.ResponseError as exc:
            if "NOGROUP" in str(exc):
                self._groups_ready = False
            raise

    async def run(self, stop: asyncio.Event) -> None:
        partitions = range(self._store.queue.partitions)
        log.info("worker %s consuming %d partitions, %d batches at once", self.name,
                 len(partitions), self._concurrency)
        heartbeat = asyncio.create_task(self._heartbeat(stop))
        try:
            await asyncio.gather(*(self._read_loop(p, stop) for p in partitions))
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            try:  # others take over what is left at once, rather than after the expiry
                await self._store.queue.farewell(self.name)
            except Exception as exc:
                log.warning("could not say goodbye (%s); others take over in %d ms", exc,
                            HEARTBEAT_TTL_MS)

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        """Tell other workers this one is alive: a worker that stops saying so (killed,
        frozen, cut off) has its entries taken over within seconds."""
        while not stop.is_set():
            try:
                await self._store.queue.heartbeat(self.name, HEARTBEAT_TTL_MS)
            except Exception as exc:
                log.warning("heartbeat failed (%s)", exc)
            try:
                await asyncio.wait_for(stop.wait(), HEARTBEAT_S)
            except TimeoutError:
                pass

    async def _read_loop(self, partition: int, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._observe_queue()
                for entry in await self._read(partition, READ_BLOCK_MS):
                    await self._slots.acquire()  # hold at most one unstarted entry per reader
                    task = asyncio.create_task(self._dispatch(entry, stop))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            except Exception as exc:
                log.warning("reading fan-out partition %d failed (%s); retrying", partition, exc)
                await asyncio.sleep(RETRY_PAUSE_S)

    async def step(self, block_ms: int = READ_BLOCK_MS) -> int:
        """Reclaim what is due, then read and handle at most one new entry per partition, in
        turn; if there was none, wait `block_ms` (tests drive a worker with this)."""
        handled = 0
        for partition in range(self._store.queue.partitions):
            for entry in await self._read(partition, None):
                await self._handler(entry, self._acker(entry))
                handled += 1
        if not handled:
            await asyncio.sleep(block_ms / 1000)
        self.handled += handled
        return handled

    async def _dispatch(self, entry: Entry, stop: asyncio.Event) -> None:
        self._in_flight.add((entry.partition, entry.entry_id))
        try:
            while True:
                try:
                    await self._handler(entry, self._acker(entry))
                    self.handled += 1
                    return
                except Exception as exc:
                    if not is_outage(exc) or stop.is_set():
                        log.exception("fan-out batch failed; the entry stays pending and is "
                                      "reclaimed after FANLINE_CLAIM_IDLE_MS")
                        return
                    # The store is failing over or restarting: the batch is idempotent, so
                    # redo it here rather than wait for a reclaim.
                    log.warning("fan-out batch hit a store outage (%s); retrying", exc)
                    await asyncio.sleep(RETRY_PAUSE_S)
        finally:
            self._in_flight.discard((entry.partition, entry.entry_id))
            self._slots.release()

    def _acker(self, entry: Entry) -> Ack:
        async def ack(writes: int, counters: Mapping[Counter, int],
                      update: DeliveryUpdate) -> Acked:
            return await self._store.queue.ack(entry, writes, counters, update)

        return ack

    async def _reclaim(self, partition: int) -> list[Entry]:
        """Entries held past `claim_idle_ms` by stopped workers, checked every quarter of it."""
        now = time.monotonic()
        if now - self._last_claim.get(partition, 0.0) < self._claim_idle_ms / 4000:
            return []
        self._last_claim[partition] = now
        entries = [e for e in await self._store.queue.claim(partition, self.name,
                                                            self._claim_idle_ms, RECLAIM_BATCH)
                   if (partition, e.entry_id) not in self._in_flight]  # our own slow batches
        if entries:
            log.warning("reclaimed %d fan-out entries from stopped workers", len(entries))
            await self._store.queue.count(partition, Counter.RECLAIMED, len(entries))
        return entries

    async def _take_over(self, partition: int) -> list[Entry]:
        """Entries of the partition's consumers that stopped (no heartbeat), now ours; a
        stopped consumer holding nothing is removed from the group."""
        now = time.monotonic()
        if now - self._last_takeover.get(partition, 0.0) < TAKEOVER_EVERY_S:
            return []
        self._last_takeover[partition] = now
        holding = await self._store.queue.consumers(partition)
        others = [name for name in holding if name != self.name]
        if not others:
            return []
        alive = await self._store.queue.alive(others)
        entries: list[Entry] = []
        for dead in (name for name in others if name not in alive):
            if holding[dead]:
                taken = await self._store.queue.take_over(partition, dead, self.name,
                                                          TAKEOVER_MIN_IDLE_MS, RECLAIM_BATCH)
                if taken:
                    log.warning("took over %d fan-out entries of stopped worker %s",
                                len(taken), dead)
                    await self._store.queue.count(partition, Counter.RECLAIMED, len(taken))
                entries += taken
            else:
                await self._store.queue.forget_consumer(partition, dead)
        return entries

    async def _recover(self, partition: int) -> list[Entry]:
        """Own entries this consumer never received (their reply was lost), checked about once
        a second, once they have waited OWN_STALL_MS; entries being processed are skipped."""
        now = time.monotonic()
        if now - self._last_recover.get(partition, 0.0) < RECOVER_EVERY_S:
            return []
        self._last_recover[partition] = now
        stall_ms = min(self._claim_idle_ms, OWN_STALL_MS)
        entries = [e for e in await self._store.queue.stalled(partition, self.name, stall_ms,
                                                               RECLAIM_BATCH)
                   if (partition, e.entry_id) not in self._in_flight]
        if entries:
            log.warning("picked up %d fan-out entries this worker never received", len(entries))
        return entries

    async def _observe_queue(self) -> None:
        """Refresh the queue gauges (their callbacks are sync, so they read what we stored)."""
        if not metrics.enabled() or time.monotonic() - self._last_stats < QUEUE_STATS_EVERY_S:
            return
        self._last_stats = time.monotonic()
        stats = await self._store.queue.stats()
        metrics.queue_observed(stats.depth, stats.pending, stats.reclaimed, stats.by_partition)
