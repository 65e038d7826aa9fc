"""How each stored record is encoded: the only code that reads or writes their bytes.

Server-side scripts never build a record themselves: they are handed encoded values (or, for the
delivery record, the field names defined here), so a format has exactly one home.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from fanline.gen.feed.v1 import post_pb2

# -- posts ------------------------------------------------------------------------------------


def encode_post(post: post_pb2.Post) -> bytes:
    return post.SerializeToString()


def decode_post(raw: bytes) -> post_pb2.Post:
    return post_pb2.Post.FromString(raw)


# An inbox (or author list) entry is the post id as member and as score, so a range by score
# is a range by time and a member is never duplicated; scripts write it (`ZADD key id id`).


def score_below(before_id: int | None) -> str:
    """The score bound of entries older than `before_id` (all of them for None)."""
    return f"({before_id}" if before_id is not None else "+inf"


def decode_ids(raw: list[bytes]) -> list[int]:
    return [int(x) for x in raw]


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- outbox entries ---------------------------------------------------------------------------


class HandOff(StrEnum):
    PUBLISH = "publish"
    RETRACT = "retract"


@dataclass(frozen=True)
class OutboxEntry:
    """A hand-off from the post service to fan-out that must not be lost."""

    kind: HandOff
    post_id: int
    author_id: str = ""  # retractions only: the body is gone by then

    def encode(self) -> str:
        if self.kind is HandOff.PUBLISH:
            return f"publish:{self.post_id}"
        return f"retract:{self.post_id}:{self.author_id}"

    @classmethod
    def decode(cls, raw: bytes | str) -> OutboxEntry | None:
        """None for anything that is not an entry we wrote (it is dropped, with a log line)."""
        kind, _, rest = text(raw).partition(":")
        post_id, _, author_id = rest.partition(":")
        if kind not in HandOff.__members__.values() or not post_id.isdigit():
            return None
        return cls(HandOff(kind), int(post_id), author_id)


# -- events (sharded pub/sub) -----------------------------------------------------------------


class EventKind(StrEnum):
    DELETED = "deleted"  # a post was deleted: drop its body and its author's cached list
    POSTED = "posted"  # a PULL author posted: drop their cached list; watchers get the post
    MODE = "mode"  # an author's delivery mode changed: drop the cached mode sets and their list
    # Written by the inbox scripts, only for users with a live watcher (WatchTimeline):
    ADDED = "added"  # a post entered these users' inboxes
    REMOVED = "removed"  # a post left these users' inboxes (deleted, or its author unfollowed)


NO_TRACE = "-"


@dataclass(frozen=True)
class Event:
    """One message on a bucket's events channel. Space-separated words (ids have no spaces):
    `deleted <post> <author>`, `posted <author> [<post> <traceparent>]`, `mode <author>`,
    `added <post> <traceparent> <user>...`, `removed <post> <user>...`; the last two are built
    by the inbox scripts (scripts.py), which take these words from here."""

    kind: EventKind
    author_id: str = ""
    post_id: int = 0
    users: tuple[str, ...] = ()
    trace: str = ""  # W3C traceparent of the request that published the post, if traced

    def encode(self) -> str:
        trace = self.trace or NO_TRACE
        if self.kind is EventKind.DELETED:
            return f"deleted {self.post_id} {self.author_id}"
        if self.kind is EventKind.POSTED and self.post_id:
            return f"posted {self.author_id} {self.post_id} {trace}"
        if self.kind is EventKind.ADDED:
            return " ".join(("added", str(self.post_id), trace, *self.users))
        if self.kind is EventKind.REMOVED:
            return " ".join(("removed", str(self.post_id), *self.users))
        return f"{self.kind.value} {self.author_id}"

    @classmethod
    def decode(cls, raw: bytes | str) -> Event | None:
        parts = text(raw).split(" ")
        kind, n = parts[0], len(parts)
        if kind == EventKind.DELETED and n == 3 and parts[1].isdigit():
            return cls(EventKind.DELETED, parts[2], int(parts[1]))
        if kind == EventKind.POSTED and n == 4 and parts[2].isdigit():
            return cls(EventKind.POSTED, parts[1], int(parts[2]), trace=_trace(parts[3]))
        if kind in (EventKind.POSTED, EventKind.MODE) and n == 2:
            return cls(EventKind(kind), parts[1])
        if kind == EventKind.ADDED and n >= 4 and parts[1].isdigit():
            return cls(EventKind.ADDED, post_id=int(parts[1]), trace=_trace(parts[2]),
                       users=tuple(parts[3:]))
        if kind == EventKind.REMOVED and n >= 3 and parts[1].isdigit():
            return cls(EventKind.REMOVED, post_id=int(parts[1]), users=tuple(parts[2:]))
        return None


def _trace(word: str) -> str:
    return "" if word == NO_TRACE else word


# -- fan-out jobs (stream entries) ------------------------------------------------------------


class JobKind(StrEnum):
    POST = "post"  # fan a post out to followers (push) or decide it is pulled
    RETRACT = "retract"  # remove a deleted post from the inboxes it reached
    BACKFILL = "backfill"  # copy a demoted author's recent posts into follower inboxes


@dataclass
class Job:
    """One stream entry: a chain's first entry (no bucket range), or one batch of followers.

    A batch covers the buckets [lo, hi) of the author's follower partitions, starting after
    `cursor` in bucket lo."""

    kind: JobKind
    author_id: str
    post_id: int = 0
    created_ms: int = 0
    mode: str = ""  # decided on the first entry and kept for the rest of the chain
    trace: dict[str, str] = field(default_factory=dict)  # W3C trace context of the publisher
    chain: str = ""  # id of the chain record of a non-post job (posts use their delivery record)
    buckets: tuple[int, int] | None = None
    cursor: str = ""

    @property
    def first(self) -> bool:
        return self.buckets is None

    def fields(self) -> dict[str, str]:
        out = {
            "kind": self.kind.value,
            "author_id": self.author_id,
            "post_id": str(self.post_id),
            "created_ms": str(self.created_ms),
            "mode": self.mode,
            "chain": self.chain,
            "buckets": f"{self.buckets[0]}-{self.buckets[1]}" if self.buckets else "",
            "cursor": self.cursor,
        }
        out.update({f"ctx.{k}": v for k, v in self.trace.items()})
        return out

    def flat_fields(self) -> list[str]:
        pairs: list[str] = []
        for key, value in self.fields().items():
            pairs += (key, value)
        return pairs

    @classmethod
    def from_fields(cls, raw: Mapping[bytes | str, bytes | str]) -> Job:
        # Stream fields come back as bytes; decode everything before use (trace context too).
        data = {text(k): text(v) for k, v in raw.items()}
        span = data.get("buckets", "")
        lo, _, hi = span.partition("-")
        return cls(
            kind=JobKind(data["kind"]),
            author_id=data.get("author_id", ""),
            post_id=int(data.get("post_id") or 0),
            created_ms=int(data.get("created_ms") or 0),
            mode=data.get("mode", ""),
            trace={k[4:]: v for k, v in data.items() if k.startswith("ctx.")},
            chain=data.get("chain", ""),
            buckets=(int(lo), int(hi)) if span else None,
            cursor=data.get("cursor", ""),
        )

    @classmethod
    def retract(cls, post_id: int, author_id: str, trace: dict[str, str]) -> Job:
        return cls(JobKind.RETRACT, author_id, post_id, trace=trace,
                   chain=f"retract:{post_id}:{uuid.uuid4().hex[:12]}")

    @classmethod
    def backfill(cls, author_id: str, trace: dict[str, str]) -> Job:
        return cls(JobKind.BACKFILL, author_id, trace=trace,
                   chain=f"backfill:{author_id}:{uuid.uuid4().hex[:12]}")

    def batch(self, buckets: tuple[int, int], cursor: str, mode: str) -> Job:
        """A later entry of the same chain."""
        return Job(self.kind, self.author_id, self.post_id, self.created_ms, mode, self.trace,
                   self.chain, buckets, cursor)


# -- delivery records -------------------------------------------------------------------------


class DeliveryState(StrEnum):
    QUEUED = "queued"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED = "failed"


# Field names of a delivery (or chain) record hash. The queue's scripts are formatted with
# these, so the names live here only.
F_STATE = "state"
F_OPEN = "open"  # batches queued and not yet acknowledged; the ack that brings it to 0 ends it
F_WRITES = "writes"
F_CREATED = "created_ms"
F_QUEUED = "queued_ms"
F_DONE = "done_ms"
F_LAG = "lag_ms"
F_TRACE = "trace_id"
F_MODE = "mode"
F_TARGETED = "targeted"
F_STARTED = "started_ms"
F_REASON = "reason"


@dataclass(frozen=True)
class DeliveryUpdate:
    """What a batch learned about its chain, written with its acknowledgement."""

    mode: int | None = None  # feed.v1.DeliveryMode value, decided on the first entry
    targeted: int | None = None
    started_ms: int | None = None
    state: DeliveryState | None = None
    reason: str = ""

    def pairs(self) -> list[str]:
        values: dict[str, str] = {}
        if self.mode is not None:
            values[F_MODE] = str(self.mode)
        if self.targeted is not None:
            values[F_TARGETED] = str(self.targeted)
        if self.started_ms is not None:
            values[F_STARTED] = str(self.started_ms)
        if self.state is not None:
            values[F_STATE] = self.state.value
        if self.reason:
            values[F_REASON] = self.reason
        out: list[str] = []
        for key, value in values.items():
            out += (key, value)
        return out


@dataclass(frozen=True)
class DeliveryRecord:
    mode: int
    state: DeliveryState | None
    targeted: int
    writes: int
    lag_ms: int
    trace_id: str
    started_ms: int = 0  # the first entry began (0: not yet)
    done_ms: int = 0  # the chain ended (0: not yet)

    @classmethod
    def decode(cls, raw: Mapping[bytes | str, bytes | str]) -> DeliveryRecord | None:
        if not raw:
            return None
        data = {text(k): text(v) for k, v in raw.items()}
        state = data.get(F_STATE, "")
        return cls(
            mode=int(data.get(F_MODE, 0)),
            state=DeliveryState(state) if state in DeliveryState.__members__.values() else None,
            targeted=int(data.get(F_TARGETED, 0)),
            writes=int(data.get(F_WRITES, 0)),
            lag_ms=int(data.get(F_LAG, 0)),
            trace_id=data.get(F_TRACE, ""),
            started_ms=int(data.get(F_STARTED, 0)),
            done_ms=int(data.get(F_DONE, 0)),
        )


# Counters of a queue partition's stats hash (summed over partitions by GetFanoutStats).
class Counter(StrEnum):
    POSTS_PUBLISHED = "posts_published"
    POSTS_PUSH = "posts_push"
    POSTS_PULL = "posts_pull"
    INBOX_WRITES = "inbox_writes"
    SKIPPED_INACTIVE = "skipped_inactive"
    INBOX_REBUILDS = "inbox_rebuilds"
    RECLAIMED = "reclaimed"
    REFUSED_QUEUE_FULL = "refused_queue_full"
