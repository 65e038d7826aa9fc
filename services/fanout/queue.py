"""The durable fan-out queue: a Redis Stream read by a consumer group of workers.

Jobs are small field maps. A post's fan-out is not one job but a chain: each entry covers one
batch of followers, and a worker queues the next batch at the tail of the stream as soon as it
knows the batch is full, before writing its own. So a 100k-follower post takes its turn batch
by batch, interleaved with everybody else's posts, and consecutive batches of one post can be
written by several workers (or one worker's concurrent loops) at once, keeping the store busy.

Every chain has a record (for a post, its delivery record) counting its open batches: +1 when a
batch is queued, -1 when it is acknowledged. The acknowledgement that brings it to zero ends the
chain. A batch re-run after a crash queues no second continuation (a per-entry marker) and an
entry acknowledged twice (a slow worker and its reclaimer) is counted once (XACK says so).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from redis.asyncio import Redis

from services.common import keys
from services.common.errors import ResourceExhausted
from services.common.redis import register_script

DELIVERY_TTL_S = 7 * 86400


class JobKind(StrEnum):
    POST = "post"  # fan a post out to followers (push) or decide it is pulled
    RETRACT = "retract"  # remove a deleted post from the inboxes it reached
    BACKFILL = "backfill"  # copy a demoted author's recent posts into follower inboxes


class DeliveryState(StrEnum):
    QUEUED = "queued"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass
class Job:
    kind: JobKind
    author_id: str
    post_id: str = ""
    created_ms: int = 0
    cursor: str = ""  # last follower handled by the previous batch ("" = first batch)
    mode: str = ""  # decided on the first batch and kept for the rest of the chain
    trace: dict[str, str] = field(default_factory=dict)  # W3C trace context of the publisher
    chain: str = ""  # id of the chain record of a non-post job (posts use their delivery record)

    @property
    def record_key(self) -> str:
        return keys.delivery(self.post_id) if self.kind is JobKind.POST else keys.chain(self.chain)

    def fields(self) -> dict[str, str]:
        out = {
            "chain": self.chain,
            "kind": self.kind.value,
            "author_id": self.author_id,
            "post_id": self.post_id,
            "created_ms": str(self.created_ms),
            "cursor": self.cursor,
            "mode": self.mode,
        }
        out.update({f"ctx.{k}": v for k, v in self.trace.items()})
        return out

    @classmethod
    def from_fields(cls, raw: dict[bytes | str, bytes | str]) -> Job:
        # Stream fields come back as bytes; decode everything before use (trace context too).
        data = {_text(k): _text(v) for k, v in raw.items()}
        return cls(
            kind=JobKind(data["kind"]),
            author_id=data.get("author_id", ""),
            post_id=data.get("post_id", ""),
            created_ms=int(data.get("created_ms") or 0),
            cursor=data.get("cursor", ""),
            mode=data.get("mode", ""),
            trace={k[4:]: v for k, v in data.items() if k.startswith("ctx.")},
            chain=data.get("chain", ""),
        )

    @classmethod
    def retract(cls, post_id: str, author_id: str, trace: dict[str, str]) -> Job:
        return cls(JobKind.RETRACT, author_id, post_id, trace=trace,
                   chain=f"retract:{post_id}:{uuid.uuid4().hex[:12]}")

    @classmethod
    def backfill(cls, author_id: str, trace: dict[str, str]) -> Job:
        return cls(JobKind.BACKFILL, author_id, trace=trace,
                   chain=f"backfill:{author_id}:{uuid.uuid4().hex[:12]}")

    def next_batch(self, cursor: str, mode: str) -> Job:
        return Job(self.kind, self.author_id, self.post_id, self.created_ms, cursor, mode,
                   self.trace, self.chain)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# KEYS[1] = stream, KEYS[2] = the job's chain record, KEYS[3] = stats hash.
# ARGV[1] = queue bound (0 = none), ARGV[2] = record TTL (s), ARGV[3] = now (ms),
# ARGV[4] = trace id, ARGV[5] = a new post (1) or other work (0), ARGV[6] = created (ms),
# ARGV[7..] = job field/value pairs.
# Returns 1 queued, 0 already queued before (a retried hand-off of the same post), -1 full.
_ENQUEUE = """
if ARGV[5] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local bound = tonumber(ARGV[1])
if bound > 0 and redis.call('XLEN', KEYS[1]) >= bound then
  redis.call('HINCRBY', KEYS[3], 'refused_queue_full', 1)
  return -1
end
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 7))
redis.call('HSET', KEYS[2], 'state', 'queued', 'queued_ms', ARGV[3], 'trace_id', ARGV[4],
           'created_ms', ARGV[6], 'open', 1)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
if ARGV[5] == '1' then redis.call('HINCRBY', KEYS[3], 'posts_published', 1) end
return 1
"""

# KEYS[1] = stream, KEYS[2] = chain record, KEYS[3] = continuation marker of the current entry.
# ARGV[1] = marker TTL (s), ARGV[2..] = the next batch's field/value pairs.
# Queues the next batch once per entry, however often the entry itself is processed.
_CONTINUE = """
if not redis.call('SET', KEYS[3], '1', 'NX', 'EX', tonumber(ARGV[1])) then return 0 end
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('HINCRBY', KEYS[2], 'open', 1)
return 1
"""

# KEYS[1] = stream, KEYS[2] = stats hash, KEYS[3] = chain record.
# ARGV[1] = group, ARGV[2] = entry id, ARGV[3] = now (ms), ARGV[4] = inbox writes of the batch,
# ARGV[5] = number of counter pairs N, then N (stats field, increment) pairs, then record
# field/value pairs.
# Returns {counted, chain done, chain's total writes, lag ms}; counted = 0 when the entry had
# already been acknowledged (by a worker we took it from), which then changes nothing.
_ACK = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return {0, 0, 0, 0} end
redis.call('XDEL', KEYS[1], ARGV[2])
local n, i = tonumber(ARGV[5]), 6
for _ = 1, n do
  if ARGV[i + 1] ~= '0' then redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]) end
  i = i + 2
end
while i < #ARGV do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local writes = redis.call('HINCRBY', KEYS[3], 'writes', ARGV[4])
if redis.call('HINCRBY', KEYS[3], 'open', -1) > 0 then return {1, 0, writes, 0} end
local lag = 0
if redis.call('HGET', KEYS[3], 'state') ~= 'failed' then
  local created = tonumber(redis.call('HGET', KEYS[3], 'created_ms') or ARGV[3])
  if created == 0 then created = tonumber(ARGV[3]) end
  lag = math.max(0, tonumber(ARGV[3]) - created)
  redis.call('HSET', KEYS[3], 'state', 'delivered', 'done_ms', ARGV[3], 'lag_ms', lag)
end
return {1, 1, writes, lag}
"""

CONTINUATION_MARKER_TTL_S = 86400


@dataclass(frozen=True)
class Acked:
    counted: bool  # False: the entry had been acknowledged already (nothing changed)
    chain_done: bool  # this was the chain's last open batch
    total_writes: int  # the chain's inbox writes so far
    lag_ms: int  # creation to the end of the chain (when done)


@dataclass(frozen=True)
class QueueStats:
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

    @property
    def write_amplification(self) -> float:
        return self.inbox_writes / self.posts_published if self.posts_published else 0.0


class FanoutQueue:
    def __init__(self, redis: Redis, queue_max: int) -> None:
        self._redis = redis
        self._max = queue_max
        self._enqueue = register_script(redis, _ENQUEUE)
        self._continue = register_script(redis, _CONTINUE)
        self._ack = register_script(redis, _ACK)

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(
                keys.fanout_stream(), keys.FANOUT_GROUP, id="0", mkstream=True
            )
        except Exception as exc:  # BUSYGROUP: another process created it first
            if "BUSYGROUP" not in str(exc):
                raise

    async def enqueue(self, job: Job, trace_id: str = "", new_post: bool = False,
                      bounded: bool = True) -> bool:
        """Queue the first batch of a chain; False if this post was queued before.

        Raises ResourceExhausted when the stream is at its bound (`bounded` work only)."""
        pairs: list[str] = []
        for key, value in job.fields().items():
            pairs += (key, value)
        result = await self._enqueue(
            keys=[keys.fanout_stream(), job.record_key, keys.fanout_stats()],
            args=[self._max if bounded else 0, DELIVERY_TTL_S, now_ms(), trace_id,
                  "1" if new_post else "0", job.created_ms, *pairs],
        )
        if int(result) == -1:
            raise ResourceExhausted(
                f"fan-out queue is full ({self._max} entries); the hand-off will be retried"
            )
        return int(result) == 1

    async def enqueue_unbounded(self, job: Job) -> None:
        """For follow-up work that must not be refused (a demotion's backfill): one entry."""
        await self.enqueue(job, bounded=False)

    async def continue_chain(self, entry_id: bytes | str, next_job: Job) -> bool:
        """Queue the batch after `entry_id`'s (once, even if that entry is processed twice)."""
        pairs: list[str] = []
        for key, value in next_job.fields().items():
            pairs += (key, value)
        entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        return bool(await self._continue(
            keys=[keys.fanout_stream(), next_job.record_key, keys.continuation_marker(entry)],
            args=[CONTINUATION_MARKER_TTL_S, *pairs],
        ))

    async def ack(
        self, entry_id: bytes | str, job: Job, writes: int, counters: dict[str, int],
        record_fields: dict[str, str | int],
    ) -> Acked:
        args: list[str | int] = [keys.FANOUT_GROUP, entry_id, now_ms(), writes, len(counters)]
        for name, value in counters.items():
            args += (name, value)
        for name, value in record_fields.items():
            args += (name, str(value))
        counted, done, total, lag = await self._ack(
            keys=[keys.fanout_stream(), keys.fanout_stats(), job.record_key], args=args
        )
        return Acked(bool(counted), bool(done), int(total), int(lag))

    async def stats(self) -> QueueStats:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.fanout_stats())
            pipe.xlen(keys.fanout_stream())
            pipe.xpending(keys.fanout_stream(), keys.FANOUT_GROUP)
            raw, depth, pending = await pipe.execute()
        counters = {_text(k): int(v) for k, v in raw.items()}
        return QueueStats(
            posts_published=counters.get("posts_published", 0),
            posts_push=counters.get("posts_push", 0),
            posts_pull=counters.get("posts_pull", 0),
            inbox_writes=counters.get("inbox_writes", 0),
            skipped_inactive=counters.get("skipped_inactive", 0),
            inbox_rebuilds=counters.get("inbox_rebuilds", 0),
            reclaimed=counters.get("reclaimed", 0),
            refused_queue_full=counters.get("refused_queue_full", 0),
            depth=int(depth),
            pending=int(pending["pending"]) if pending else 0,
        )

    async def delivery(self, post_id: str) -> dict[str, str]:
        raw = await self._redis.hgetall(keys.delivery(post_id))
        return {_text(k): _text(v) for k, v in raw.items()}


def now_ms() -> int:
    return int(time.time() * 1000)
