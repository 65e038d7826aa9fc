"""Where every key lives: buckets, queue partitions, hash tags, slots and the post id format.

Pure: no I/O. The storage layer is the only user; services never see a key.

Placement, and why:
- Every key about a user (inbox, activity stamp, follow sets, post list, request ids, and the
  bodies and outbox entries of their posts) carries the hash tag of the user's *bucket*, one of
  a fixed number `buckets` (a power of two, 64..1024). So each call the services make stays in
  one slot: a user's reads and writes, creating a post (id, body, author list and outbox entry
  in one script), a follow edge on the follower's side.
- An author's followers are also kept *partitioned by the follower's bucket*: a fan-out batch
  is one bucket's followers, whose inboxes share that bucket's slot, so it is one script call
  however many followers it covers.
- Bucket tags are chosen so that bucket i hashes into the i-th of `buckets` equal slot ranges.
  A cluster with the standard contiguous slot split then holds the same number of buckets on
  every master (exactly, when the bucket count is a multiple of the master count).
- The fan-out queue is split into `partitions` streams with the same even spread; a post's
  queue entries, delivery record and counters live in the partition of its author's bucket, so
  enqueueing and acknowledging stay single-slot scripts.

Post ids: (ms since EPOCH) * 4096 + sequence * buckets + author's bucket. Time-ordered, below
2**53 (exact as a sorted-set score and a JS number) for 69 years, unique without a central
counter: each bucket issues its own sequence, and the bucket is part of the id, which also says
where the post's body lives.
"""

from __future__ import annotations

import functools
import zlib
from datetime import UTC, datetime

from redis.crc import key_slot

PREFIX = "fl"
SLOTS = 16384

BUCKETS_MIN = 64
BUCKETS_MAX = 1024  # at least 4 ids per millisecond per bucket (4096 / buckets)

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
ID_LOW_BITS = 12  # sequence and bucket share the 12 bits below the milliseconds
MAX_POST_ID = 2**53 - 1


def slot_of(key: str | bytes) -> int:
    """The cluster slot of a key (CRC16 of its hash tag, as the server computes it)."""
    return int(key_slot(key.encode() if isinstance(key, str) else key))


@functools.cache
def spread_tags(count: int, prefix: str) -> tuple[str, ...]:
    """`count` hash tags, the i-th hashing into the i-th of `count` equal slot ranges.

    Deterministic: the first candidate `<prefix><i>.<n>` (n = 0, 1, ...) that lands in range.
    """
    tags: list[str] = []
    for index in range(count):
        low, high = index * SLOTS // count, (index + 1) * SLOTS // count
        n = 0
        while not low <= slot_of(f"{prefix}{index}.{n}") < high:
            n += 1
        tags.append(f"{prefix}{index}.{n}")
    return tuple(tags)


class LayoutError(ValueError):
    """A bucket or partition count the layout cannot use."""


class Layout:
    """Key builders for one deployment's bucket and partition counts."""

    def __init__(self, buckets: int, partitions: int) -> None:
        if buckets & (buckets - 1) or not BUCKETS_MIN <= buckets <= BUCKETS_MAX:
            raise LayoutError(f"bucket count must be a power of two in {BUCKETS_MIN}..{BUCKETS_MAX}")
        if not 1 <= partitions <= buckets:
            raise LayoutError(f"partition count must be in 1..{buckets} (the bucket count)")
        self.buckets = buckets
        self.partitions = partitions
        self._bucket_tags = spread_tags(buckets, "b")
        self._partition_tags = spread_tags(partitions, "q")

    # -- placement ---------------------------------------------------------------------------

    def bucket_of_user(self, user_id: str) -> int:
        return zlib.crc32(user_id.encode()) % self.buckets

    def bucket_of_post(self, post_id: int) -> int:
        return post_id % self.buckets

    def compose_post_id(self, ms_since_epoch: int, sequence: int, bucket: int) -> int:
        """The id the bucket's id script issues for this millisecond and sequence (bulk loads
        write ids the services would have issued)."""
        return (ms_since_epoch << ID_LOW_BITS) + sequence * self.buckets + bucket

    def partition_of_bucket(self, bucket: int) -> int:
        return bucket % self.partitions

    def partition_of_user(self, user_id: str) -> int:
        return self.partition_of_bucket(self.bucket_of_user(user_id))

    def partition_of_post(self, post_id: int) -> int:
        return self.partition_of_bucket(self.bucket_of_post(post_id))

    def bucket_tag(self, bucket: int) -> str:
        return self._bucket_tags[bucket]

    def _user(self, user_id: str, kind: str) -> str:
        return f"{PREFIX}:{{{self._bucket_tags[self.bucket_of_user(user_id)]}}}:{kind}:{user_id}"

    def _in_bucket(self, bucket: int, kind: str) -> str:
        return f"{PREFIX}:{{{self._bucket_tags[bucket]}}}:{kind}"

    def _in_partition(self, partition: int, kind: str) -> str:
        return f"{PREFIX}:{{{self._partition_tags[partition]}}}:{kind}"

    # -- a user's keys (all in the user's bucket) --------------------------------------------

    def inbox(self, user_id: str) -> str:
        """Sorted set of post ids pushed to the user; score = post id; capped."""
        return self._user(user_id, "inbox")

    def seen(self, user_id: str) -> str:
        """Unix seconds of the user's latest timeline read; absent = never read."""
        return self._user(user_id, "seen")

    def following(self, user_id: str) -> str:
        """Sorted set (scores 0, ordered by member) of the users `user_id` follows."""
        return self._user(user_id, "following")

    def followers(self, user_id: str) -> str:
        """Sorted set (scores 0, ordered by member) of everyone following `user_id`: counts,
        listings and small fan-outs read it."""
        return self._user(user_id, "followers")

    def inbox_and_seen(self, bucket: int, user_ids: list[str]) -> list[str]:
        """(inbox, activity stamp) of each user of `bucket`, flattened: a fan-out script's KEYS.
        Built in one pass because a worker builds thousands of them per batch."""
        tag = self._bucket_tags[bucket]
        out: list[str] = []
        for user_id in user_ids:
            out += (f"{PREFIX}:{{{tag}}}:inbox:{user_id}", f"{PREFIX}:{{{tag}}}:seen:{user_id}")
        return out

    def local_followers(self, bucket: int, author_id: str) -> str:
        """The author's followers whose own bucket is `bucket` (they share its slot with
        their inboxes): one fan-out batch reads one of these."""
        return self._in_bucket(bucket, f"followers-here:{author_id}")

    def author_posts(self, author_id: str) -> str:
        """Sorted set of the author's live post ids; score = post id. Pulled lists read it."""
        return self._user(author_id, "posts")

    def request(self, author_id: str, request_id: str) -> str:
        """The post id created for (author, request_id): CreatePost retries return it."""
        return self._user(author_id, f"req:{request_id}")

    def post(self, post_id: int) -> str:
        """A post's body; in the bucket its id names (its author's)."""
        return self._in_bucket(self.bucket_of_post(post_id), f"post:{post_id}")

    # -- per-bucket keys ---------------------------------------------------------------------

    def last_post_id(self, bucket: int) -> str:
        """The last id the bucket issued, so its ids stay unique and increasing."""
        return self._in_bucket(bucket, "last-id")

    def outbox(self, bucket: int) -> str:
        """Sorted set of the bucket's hand-offs to fan-out not yet accepted; score = due (ms)."""
        return self._in_bucket(bucket, "outbox")

    def pull_authors(self, bucket: int) -> str:
        """The bucket's authors whose new posts are not pushed (delivery mode PULL)."""
        return self._in_bucket(bucket, "pull")

    def merged_authors(self, bucket: int) -> str:
        """The bucket's authors whose lists timelines merge at read time: PULL authors, plus
        demoted ones until their backfill has filled follower inboxes."""
        return self._in_bucket(bucket, "merged")

    def events(self, bucket: int) -> str:
        """Sharded pub/sub channel of the bucket's authors' events (deletes, pulled posts,
        mode changes), so timeline processes drop stale cached state at once."""
        return self._in_bucket(bucket, "events")

    def watchers(self, bucket: int) -> str:
        """Sorted set of the bucket's users with a live WatchTimeline stream somewhere; score =
        until when (ms). The inbox scripts announce changes only for these users."""
        return self._in_bucket(bucket, "watchers")

    # -- fan-out queue partitions ------------------------------------------------------------

    def stream(self, partition: int) -> str:
        return self._in_partition(partition, "stream")

    def queue_stats(self, partition: int) -> str:
        """Hash of the partition's delivery counters (posts_published, inbox_writes, ...)."""
        return self._in_partition(partition, "stats")

    def delivery(self, post_id: int) -> str:
        """Hash tracking one post's delivery (mode, state, targeted, writes, times, trace id)."""
        return self._in_partition(self.partition_of_post(post_id), f"delivery:{post_id}")

    def chain(self, partition: int, chain_id: str) -> str:
        """Hash tracking a non-post job chain (retraction, backfill): its open batches."""
        return self._in_partition(partition, f"chain:{chain_id}")

    def continuation(self, partition: int, entry_id: str) -> str:
        """Set once the batches after stream entry `entry_id` are queued (no twins on re-runs)."""
        return self._in_partition(partition, f"next:{entry_id}")

    @staticmethod
    def worker_heartbeat(worker: str) -> str:
        """Set by a live worker with a short expiry: a consumer without one has stopped."""
        return f"{PREFIX}:{{w.{worker}}}:alive"

    # -- the deployment ----------------------------------------------------------------------

    @staticmethod
    def record_key() -> str:
        """Hash of the counts this store was laid out with; a process configured with other
        counts refuses to start (its keys would point elsewhere)."""
        return f"{PREFIX}:layout"


QUEUE_GROUP = "fanout-workers"


# -- post ids ---------------------------------------------------------------------------------

def id_time(post_id: int) -> datetime:
    """The creation instant encoded in a post id."""
    ms = (post_id >> ID_LOW_BITS) + EPOCH_MS
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def first_id_at(unix_ms: int) -> int:
    """The lowest post id of that millisecond: every post created later has a larger id."""
    return max(0, unix_ms - EPOCH_MS) << ID_LOW_BITS


def id_span(duration_ms: int) -> int:
    """How far apart the ids of two posts created `duration_ms` apart are (at least)."""
    return duration_ms << ID_LOW_BITS
