"""Wall-clock time in the units stored records use."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Unix milliseconds (delivery records, outbox due times, lag)."""
    return int(time.time() * 1000)
