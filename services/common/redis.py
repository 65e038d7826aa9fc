"""The one Redis client factory."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

POOL_WAIT_S = 5.0


def connect(url: str, max_connections: int = 64) -> Redis:
    """A pooled asyncio client.

    The pool blocks (up to POOL_WAIT_S) when every connection is busy instead of failing the
    call, so a burst of concurrent requests queues for a connection rather than erroring.
    `decode_responses` stays off: post bodies are protobuf bytes.
    """
    if not url:
        raise ValueError("FANLINE_REDIS_URL is empty: start `fanline up` or set a store URL")
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=POOL_WAIT_S, health_check_interval=30
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections
