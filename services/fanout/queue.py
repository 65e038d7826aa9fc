"""The durable fan-out queue: a Redis Stream read by a consumer group of workers.

Jobs are small field maps. A post's fan-out is not one job but a chain: each job covers one
batch of followers and, when acknowledged, is replaced by its continuation at the tail of the
stream (in the same transaction). A 100k-follower post therefore takes its turn batch by
batch, interleaved with everybody else's posts, instead of holding a worker for its whole
fan-out; and a worker that dies holds at most one batch, which another worker reclaims.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

from redis.asyncio import Redis

from services.common import keys
from services.common.errors import ResourceExhausted

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

    def fields(self) -> dict[str, str]:
        out = {
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
        )

    def next_batch(self, cursor: str, mode: str) -> Job:
        return Job(self.kind, self.author_id, self.post_id, self.created_ms, cursor, mode, self.trace)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# KEYS[1] = stream, KEYS[2] = the post's delivery record, KEYS[3] = stats hash.
# ARGV[1] = queue bound, ARGV[2] = record TTL (s), ARGV[3] = now (ms), ARGV[4] = trace id,
# ARGV[5] = record the job as a new post (1) or not (0), ARGV[6..] = job field/value pairs.
# Returns 1 queued, 0 already queued before (a retried hand-off), -1 queue full.
_ENQUEUE = """
if ARGV[5] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  redis.call('HINCRBY', KEYS[3], 'refused_queue_full', 1)
  return -1
end
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 6))
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[2], 'state', 'queued', 'queued_ms', ARGV[3], 'trace_id', ARGV[4])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
  redis.call('HINCRBY', KEYS[3], 'posts_published', 1)
end
return 1
"""


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
        self._enqueue = redis.register_script(_ENQUEUE)

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(
                keys.fanout_stream(), keys.FANOUT_GROUP, id="0", mkstream=True
            )
        except Exception as exc:  # BUSYGROUP: another process created it first
            if "BUSYGROUP" not in str(exc):
                raise

    async def enqueue(self, job: Job, trace_id: str = "", new_post: bool = False) -> bool:
        """Queue a job; False if this post was queued before. ResourceExhausted when full."""
        pairs: list[str] = []
        for key, value in job.fields().items():
            pairs += (key, value)
        result = await self._enqueue(
            keys=[keys.fanout_stream(), keys.delivery(job.post_id), keys.fanout_stats()],
            args=[self._max, DELIVERY_TTL_S, now_ms(), trace_id, "1" if new_post else "0", *pairs],
        )
        if int(result) == -1:
            raise ResourceExhausted(
                f"fan-out queue is full ({self._max} entries); the hand-off will be retried"
            )
        return int(result) == 1

    async def enqueue_unbounded(self, job: Job) -> None:
        """For follow-up work that must not be refused (a demotion's backfill): one entry."""
        await self._redis.xadd(keys.fanout_stream(), job.fields())

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
