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
