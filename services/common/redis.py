"""The one Redis client factory."""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, Connection, Redis
from redis.commands.core import AsyncScript

POOL_WAIT_S = 5.0


class HiredisPackedConnection(Connection):
    """Packs commands with hiredis's C encoder.

    redis.asyncio packs every argument in Python (about 1.3 µs each); a fan-out batch sends
    3,000 keys per script call, so packing alone cost more than the store spent running it.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:
            # redis-py passes multi-word commands ("CLIENT SETNAME") as one argument.
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # memoryview or another type hiredis does not take: as redis-py would
            return [hiredis.pack_command(tuple(_encodable(a) for a in args))]


def _encodable(value: Any) -> Any:
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, str | bytes | int | float):
        return value
    return str(value)


def connect(url: str, max_connections: int = 64) -> Redis:
    """A pooled asyncio client.

    The pool blocks (up to POOL_WAIT_S) when every connection is busy instead of failing the
    call, so a burst of concurrent requests queues for a connection rather than erroring.
    `decode_responses` stays off: post bodies are protobuf bytes.
    """
    if not url:
        raise ValueError("FANLINE_REDIS_URL is empty: start `fanline up` or set a store URL")
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT_S,
        health_check_interval=30,
        connection_class=HiredisPackedConnection,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections


_SCRIPTS: dict[str, str] = {}  # sha1 -> source of every server-side script Fanline runs


def register_script(redis: Redis, source: str) -> AsyncScript:
    """redis.register_script, remembered so `preload_scripts` can load it at start-up."""
    script = redis.register_script(source)
    _SCRIPTS[script.sha] = source
    return script


async def preload_scripts(redis: Redis) -> None:
    """Load every registered script before serving, so the first call of each is a plain
    EVALSHA instead of a NOSCRIPT error and a retry (which also shows up as an error span)."""
    async with redis.pipeline(transaction=False) as pipe:
        for source in _SCRIPTS.values():
            pipe.script_load(source)
        await pipe.execute()
