"""Delivery policy: pure decisions, no I/O."""

from __future__ import annotations

import math
from enum import IntEnum


class Mode(IntEnum):
    """Values match feed.v1.DeliveryMode."""

    PUSH = 1
    PULL = 2


def demote_mark(threshold: int, demote_ratio: float) -> int:
    """Follower count below which a PULL author goes back to PUSH."""
    return math.floor(threshold * demote_ratio)


def classify(follower_count: int, current: Mode, threshold: int, demote_ratio: float) -> Mode:
    """Promote at the threshold, demote only below a lower mark, so an author hovering around
    the threshold does not flap between modes with every follow and unfollow."""
    if follower_count >= threshold:
        return Mode.PULL
    if current is Mode.PULL and follower_count >= demote_mark(threshold, demote_ratio):
        return Mode.PULL
    return Mode.PUSH


def active_since(now_s: float, active_days: float) -> int:
    """Unix second before which a follower's last read makes them inactive (not pushed to)."""
    return int(now_s - active_days * 86400)


def bucket_ranges(follower_count: int, buckets: int, batch_size: int) -> list[tuple[int, int]]:
    """How a big author's fan-out is split into batches: consecutive ranges of follower
    buckets [lo, hi) holding about `batch_size` followers each (followers spread evenly over
    buckets), at least one bucket per range. A range is one stream entry; within it, each
    bucket is one script call."""
    per_range = max(1, min(buckets, buckets * batch_size // max(follower_count, 1)))
    return [(lo, min(lo + per_range, buckets)) for lo in range(0, buckets, per_range)]


def fits_one_batch(follower_count: int, batch_size: int) -> bool:
    """Small authors (most of them) are fanned out by their first entry alone, from their
    follower list, with no per-bucket reads."""
    return follower_count <= batch_size
