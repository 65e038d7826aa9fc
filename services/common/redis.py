"""The one Redis client factory."""

from __future__ import annotations

from redis.asyncio import Redis


def connect(url: str, max_connections: int = 64) -> Redis:
    """A pooled asyncio client. `decode_responses` stays off: post bodies are protobuf bytes."""
    if not url:
        raise ValueError("FANLINE_REDIS_URL is empty: start `fanline up` or set a store URL")
    return Redis.from_url(url, max_connections=max_connections, health_check_interval=30)
