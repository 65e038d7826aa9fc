"""The fan-out queue's storage: partitioned streams, consumer groups, chain records, counters.

A job goes to the partition of its author's bucket (for a post: the bucket its id names, the
same thing), and its chain record (a post's delivery record) lives in that partition too, so
enqueueing, queueing the next batches and acknowledging are single-slot scripts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import redis.exceptions as rx

from fanline.common.clock import now_ms
from fanline.common.store import records, scripts
from fanline.common.store.client import Call, StoreClient
from fanline.common.store.layout import QUEUE_GROUP, Layout
from fanline.common.store.records import Counter, DeliveryRecord, DeliveryUpdate, Job, JobKind

DELIVERY_TTL_S = 7 * 86400
CONTINUATION_MARKER_TTL_S = 86400


@dataclass(frozen=True)
class Acked:
    counted: bool  # False: the entry had been acknowledged already (nothing changed)
    chain_done: bool  # this was the chain's last open batch
    total_writes: int  # the chain's inbox writes so far
    lag_ms: int  # creation to the end of the chain (when done)


@dataclass(frozen=True)
class QueueStats:
    """The queue's counters, summed over its partitions."""

    posts_published: int
    posts_push: int
    posts_pull: int
    inbox_writes: int
    skipped_inactive: int
    inbox_rebuilds: int
    reclaimed: int
    refused_queue_full: int
    depth: int
    pending: int
    # (depth, pending) of each partition's stream, in partition order
    by_partition: tuple[tuple[int, int], ...] = ()

    @property
    def write_amplification(self) -> float:
        return self.inbox_writes / self.posts_published if self.posts_published else 0.0


@dataclass(frozen=True)
class Entry:
    partition: int
    entry_id: str
    job: Job


class QueueRecords:
    def __init__(self, client: StoreClient, layout: Layout, bound: int) -> None:
        """`bound`: the whole queue's bound, shared evenly by the partitions."""
        self._client = client
        self._layout = layout
        self.partitions = layout.partitions
        self._partition_bound = max(1, -(-bound // layout.partitions))

    def partition_of(self, job: Job) -> int:
        if job.kind is JobKind.POST:
            return self._layout.partition_of_post(job.post_id)
        return self._layout.partition_of_user(job.author_id)

    def _record_key(self, job: Job, partition: int) -> str:
        if job.kind is JobKind.POST:
            return self._layout.delivery(job.post_id)
        return self._layout.chain(partition, job.chain)

    def stream_name(self, partition: int) -> str:
        return self._layout.stream(partition)

    async def ensure_groups(self) -> None:
        for partition in range(self.partitions):
            try:
                await self._client.command("XGROUP", "CREATE", self._layout.stream(partition),
                                           QUEUE_GROUP, "0", "MKSTREAM")
            except rx.ResponseError as exc:  # BUSYGROUP: another process created it first
                if "BUSYGROUP" not in str(exc):
                    raise

    async def enqueue(self, job: Job, bounded: bool, trace_id: str = "",
                      new_post: bool = False) -> int:
        """Queue a chain's first entry: 1 queued, 0 queued before (a repeated hand-off of one
        post, or a retried call), -1 the partition is at its bound (`bounded` work only)."""
        partition = self.partition_of(job)
        result = await self._client.run(Call(
            scripts.ENQUEUE,
            [self._layout.stream(partition), self._record_key(job, partition),
             self._layout.queue_stats(partition)],
            [self._partition_bound if bounded else 0, DELIVERY_TTL_S, now_ms(), trace_id,
             "1" if new_post else "0", job.created_ms, *job.flat_fields()],
        ), durable=True)
        return int(result)

    @property
    def partition_bound(self) -> int:
        return self._partition_bound

    async def continue_chain(self, entry: Entry, batches: Sequence[Job]) -> bool:
        """Queue the batches after `entry` (once, even if that entry is processed twice)."""
        if not batches:
            return False
        args: list[str | int] = [CONTINUATION_MARKER_TTL_S, len(batches)]
        for batch in batches:
            fields = batch.flat_fields()
            args += [len(fields), *fields]
        return bool(await self._client.run(Call(
            scripts.CONTINUE,
            [self._layout.stream(entry.partition), self._record_key(entry.job, entry.partition),
             self._layout.continuation(entry.partition, entry.entry_id)],
            args,
        ), durable=True))

    async def ack(self, entry: Entry, writes: int, counters: Mapping[Counter, int],
                  update: DeliveryUpdate) -> Acked:
        """Acknowledge and count a batch in one step; ends the chain if it was the last."""
        args: list[str | int] = [QUEUE_GROUP, entry.entry_id, now_ms(), writes, len(counters)]
        for counter, value in counters.items():
            args += (counter.value, value)
        args += update.pairs()
        counted, done, total, lag = await self._client.run(Call(
            scripts.ACK,
            [self._layout.stream(entry.partition), self._layout.queue_stats(entry.partition),
             self._record_key(entry.job, entry.partition)],
            args,
        ))
        return Acked(bool(counted), bool(done), int(total), int(lag))

    async def read(self, partition: int, consumer: str, block_ms: int | None) -> list[Entry]:
        """The next new entry of a partition for this consumer (waiting up to `block_ms`;
        None: not at all)."""
        block = ("BLOCK", block_ms) if block_ms is not None else ()
        reply = await self._client.command(
            "XREADGROUP", "GROUP", QUEUE_GROUP, consumer, "COUNT", 1, *block,
            "STREAMS", self._layout.stream(partition), ">")
        return [Entry(partition, records.text(entry_id), Job.from_fields(fields))
                for _stream, entries in (reply or []) for entry_id, fields in entries if fields]

    async def claim(self, partition: int, consumer: str, min_idle_ms: int,
                    count: int) -> list[Entry]:
        """Entries other consumers have held for `min_idle_ms` (they stopped), now ours."""
        reply = await self._client.command(
            "XAUTOCLAIM", self._layout.stream(partition), QUEUE_GROUP, consumer, min_idle_ms,
            "0-0", "COUNT", count)
        entries = reply[1] if reply else []
        return [Entry(partition, records.text(entry_id), Job.from_fields(fields))
                for entry_id, fields in entries if fields]

    async def stalled(self, partition: int, consumer: str, min_idle_ms: int,
                      count: int) -> list[Entry]:
        """This consumer's own entries, delivered to it but untouched for `min_idle_ms`, now
        handed to it again. A reply can be lost after the server delivered an entry (the
        connection dropped, the client sent the read again): the entry then waits, pending,
        for a consumer that never saw it."""
        stream = self._layout.stream(partition)
        pending = await self._client.call(lambda r: r.xpending_range(
            stream, QUEUE_GROUP, "-", "+", count, consumername=consumer, idle=min_idle_ms))
        ids = [p["message_id"] for p in pending]
        if not ids:
            return []
        claimed = await self._client.call(
            lambda r: r.xclaim(stream, QUEUE_GROUP, consumer, min_idle_ms, ids))
        return [Entry(partition, records.text(entry_id), Job.from_fields(fields))
                for entry_id, fields in claimed if fields]

    # -- liveness and takeover ---------------------------------------------------------------

    async def heartbeat(self, worker: str, ttl_ms: int) -> None:
        await self._client.command("SET", self._layout.worker_heartbeat(worker), 1, "PX", ttl_ms)

    async def farewell(self, worker: str) -> None:
        await self._client.command("DEL", self._layout.worker_heartbeat(worker))

    async def consumers(self, partition: int) -> dict[str, int]:
        """The partition's consumers and how many entries each holds."""
        stream = self._layout.stream(partition)
        infos = await self._client.call(lambda r: r.xinfo_consumers(stream, QUEUE_GROUP))
        return {records.text(c["name"]): int(c["pending"]) for c in infos}

    async def alive(self, workers: Sequence[str]) -> set[str]:
        """Which of `workers` have a live heartbeat."""
        replies = await self._client.batch(
            [("EXISTS", self._layout.worker_heartbeat(w)) for w in workers])
        return {w for w, live in zip(workers, replies, strict=True) if int(live)}

    async def take_over(self, partition: int, dead: str, heir: str, min_idle_ms: int,
                        count: int) -> list[Entry]:
        """A stopped consumer's entries, now `heir`'s. `min_idle_ms` keeps two heirs from
        both taking one entry: the first claim resets its idle time."""
        stream = self._layout.stream(partition)
        pending = await self._client.call(lambda r: r.xpending_range(
            stream, QUEUE_GROUP, "-", "+", count, consumername=dead))
        ids = [p["message_id"] for p in pending]
        if not ids:
            return []
        claimed = await self._client.call(
            lambda r: r.xclaim(stream, QUEUE_GROUP, heir, min_idle_ms, ids))
        return [Entry(partition, records.text(entry_id), Job.from_fields(fields))
                for entry_id, fields in claimed if fields]

    async def forget_consumer(self, partition: int, consumer: str) -> None:
        """Remove a stopped consumer that holds nothing any more."""
        await self._client.command("XGROUP", "DELCONSUMER", self._layout.stream(partition),
                                   QUEUE_GROUP, consumer)

    async def count(self, partition: int, counter: Counter, amount: int) -> None:
        await self._client.command("HINCRBY", self._layout.queue_stats(partition), counter.value,
                                   amount)

    async def count_for_user(self, user_id: str, counter: Counter, amount: int) -> None:
        await self.count(self._layout.partition_of_user(user_id), counter, amount)

    async def stats(self) -> QueueStats:
        """Counters, depth and pending entries summed over every partition (one pipeline)."""
        commands: list[tuple[object, ...]] = []
        for partition in range(self.partitions):
            stream = self._layout.stream(partition)
            commands += [("HGETALL", self._layout.queue_stats(partition)), ("XLEN", stream),
                         ("XPENDING", stream, QUEUE_GROUP)]
        try:
            replies = await self._client.batch(commands)
        except rx.ResponseError as exc:  # before any worker made the groups
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_groups()
            replies = await self._client.batch(commands)
        counters: dict[str, int] = {}
        by_partition: list[tuple[int, int]] = []
        for index in range(self.partitions):
            raw, length, summary = replies[3 * index: 3 * index + 3]
            for key, value in raw.items():
                name = records.text(key)
                counters[name] = counters.get(name, 0) + int(value)
            by_partition.append((int(length), int(summary["pending"]) if summary else 0))
        return QueueStats(**{c.value: counters.get(c.value, 0) for c in Counter},
                          depth=sum(d for d, _ in by_partition),
                          pending=sum(p for _, p in by_partition),
                          by_partition=tuple(by_partition))

    async def deliveries(self, post_ids: Sequence[int]) -> list[DeliveryRecord | None]:
        """Several posts' delivery records (one pipeline)."""
        replies = await self._client.batch(
            [("HGETALL", self._layout.delivery(p)) for p in post_ids])
        return [DeliveryRecord.decode(r) for r in replies]

    async def delivery(self, post_id: int) -> DeliveryRecord | None:
        return DeliveryRecord.decode(
            await self._client.command("HGETALL", self._layout.delivery(post_id)))
