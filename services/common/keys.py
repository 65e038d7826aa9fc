"""Every Redis key Fanline uses, built in one place.

Per-user keys carry the user id as a hash tag (`{alice}`) so a Redis Cluster deployment keeps
one user's inbox, activity stamp, follow sets and post list in one slot: a fan-out batch can
then be grouped by slot, and a per-user read never crosses slots. Queue bookkeeping (stream,
delivery records, counters) shares the `{fanout}` tag so a worker's acknowledgement is one
single-slot transaction.
"""

from __future__ import annotations

PREFIX = "fl"


def inbox(user_id: str) -> str:
    """Sorted set of post ids pushed to the user; score = post id; capped at FANLINE_INBOX_MAX."""
    return f"{PREFIX}:{{{user_id}}}:inbox"


def last_seen(user_id: str) -> str:
    """Unix seconds of the user's latest timeline read; absent = never read."""
    return f"{PREFIX}:{{{user_id}}}:seen"


def fanout_write_keys(follower_ids: list[str]) -> list[str]:
    """(inbox, last_seen, following) of each follower, flattened: a fan-out script's KEYS.
    Built in one pass because a worker builds 3,000 of them per batch."""
    out: list[str] = []
    for user_id in follower_ids:
        out += (f"{PREFIX}:{{{user_id}}}:inbox", f"{PREFIX}:{{{user_id}}}:seen",
                f"{PREFIX}:{{{user_id}}}:following")
    return out


def followers(user_id: str) -> str:
    """Sorted set (all scores 0, ordered by member) of users following `user_id`."""
    return f"{PREFIX}:{{{user_id}}}:followers"


def following(user_id: str) -> str:
    """Sorted set (all scores 0, ordered by member) of users `user_id` follows."""
    return f"{PREFIX}:{{{user_id}}}:following"


def author_posts(user_id: str) -> str:
    """Sorted set of the author's live post ids; score = post id. Pulled lists read this."""
    return f"{PREFIX}:{{{user_id}}}:posts"


def request_id(author_id: str, request_id: str) -> str:
    """Post id created for (author, request_id): makes CreatePost idempotent."""
    return f"{PREFIX}:{{{author_id}}}:req:{request_id}"


def post(post_id: str) -> str:
    """Serialized feed.v1.Post."""
    return f"{PREFIX}:post:{{{post_id}}}"


def post_id_sequence() -> str:
    """Last issued post id, so ids stay unique and increasing across processes."""
    return f"{PREFIX}:postid"


def outbox() -> str:
    """Sorted set of hand-offs to fan-out not yet accepted; score = next attempt (ms)."""
    return f"{PREFIX}:outbox"


def pull_authors() -> str:
    """Set of authors whose new posts are not pushed (delivery mode PULL)."""
    return f"{PREFIX}:{{authors}}:pull"


def merged_authors() -> str:
    """Set of authors whose lists timelines merge at read time: PULL authors, plus demoted
    ones until their backfill has filled follower inboxes (so no post flickers)."""
    return f"{PREFIX}:{{authors}}:merged"


FANOUT_TAG = "{fanout}"


def fanout_stream() -> str:
    return f"{PREFIX}:{FANOUT_TAG}:stream"


FANOUT_GROUP = "fanout-workers"


def fanout_stats() -> str:
    """Hash of delivery counters (posts_published, inbox_writes, ...)."""
    return f"{PREFIX}:{FANOUT_TAG}:stats"


def delivery(post_id: str) -> str:
    """Hash tracking one post's delivery (mode, state, targeted, writes, times, trace id)."""
    return f"{PREFIX}:{FANOUT_TAG}:delivery:{post_id}"


def chain(chain_id: str) -> str:
    """Hash tracking a non-post job chain (retraction, backfill): its open batches."""
    return f"{PREFIX}:{FANOUT_TAG}:chain:{chain_id}"


def continuation_marker(entry_id: str) -> str:
    """Set once the batch after stream entry `entry_id` is queued, so a re-run queues no twin."""
    return f"{PREFIX}:{FANOUT_TAG}:next:{entry_id}"


def events_channel() -> str:
    """Pub/sub channel that tells timeline processes to drop cached state at once."""
    return f"{PREFIX}:events"
