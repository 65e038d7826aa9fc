"""Post ids: time-ordered, unique across processes, exact as Redis scores.

id = (milliseconds since 2024-01-01) * 4096 + sequence, issued by one server-side script so
every process shares the sequence. 41 bits of milliseconds (about 69 years) plus 12 bits of
sequence stay below 2**53, the largest integer a sorted-set score (a double) holds exactly.
If more than 4096 ids are asked for in one millisecond the ids run ahead of the clock, which
keeps them unique and increasing.
"""

from __future__ import annotations

from datetime import UTC, datetime

from redis.asyncio import Redis

from services.common import keys
from services.common.redis import register_script

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
SEQUENCE_BITS = 12
MAX_ID = 2**53 - 1

# KEYS[1] = last issued id. ARGV[1] = epoch (ms), ARGV[2] = 2**SEQUENCE_BITS.
# Returns the new id as a decimal string (Lua numbers are doubles; %.0f keeps all digits).
_NEXT_ID = """
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[1])
local candidate = ms * tonumber(ARGV[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if candidate <= last then candidate = last + 1 end
local id = string.format('%.0f', candidate)
redis.call('SET', KEYS[1], id)
return id
"""


class PostIdGenerator:
    def __init__(self, redis: Redis) -> None:
        self._script = register_script(redis, _NEXT_ID)

    async def next_id(self) -> int:
        raw = await self._script(keys=[keys.post_id_sequence()], args=[EPOCH_MS, 1 << SEQUENCE_BITS])
        post_id = int(raw)
        if post_id > MAX_ID:
            raise OverflowError("post id space exhausted")
        return post_id


def id_time(post_id: int) -> datetime:
    """The creation instant encoded in a post id."""
    ms = (post_id >> SEQUENCE_BITS) + EPOCH_MS
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def id_floor_for_ms(unix_ms: int) -> int:
    """The smallest id that can be issued at or after `unix_ms`."""
    return max(0, unix_ms - EPOCH_MS) << SEQUENCE_BITS
