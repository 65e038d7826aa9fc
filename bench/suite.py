"""A fresh suite (own embedded store, services, workers) per measurement."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from redis.asyncio import Redis

from services.common.embedded import free_port
from services.launcher import Suite

PUSH_ONLY_THRESHOLD = 10**12  # no account has that many followers: every author pushes


def suite_env(threshold: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        # Empty = a new embedded store, whatever the caller's shell points at: each
        # strategy must start from an empty store.
        "FANLINE_REDIS_URL": "",
        "FANLINE_CELEBRITY_THRESHOLD": str(threshold),
        "FANLINE_LOG_LEVEL": "WARNING",
        # Explicit free ports, so an exported FANLINE_*_ADDR (from `fanline up`) cannot clash.
        "FANLINE_POST_ADDR": f"127.0.0.1:{free_port()}",
        "FANLINE_FANOUT_ADDR": f"127.0.0.1:{free_port()}",
        "FANLINE_TIMELINE_ADDR": f"127.0.0.1:{free_port()}",
    }
    env.update(extra or {})
    return env


@contextlib.contextmanager
def running_suite(threshold: int, workers: int, log_dir: str | Path,
                  extra_env: Mapping[str, str] | None = None) -> Iterator[Suite]:
    os.makedirs(log_dir, exist_ok=True)
    suite = Suite(workers=workers, extra_env=suite_env(threshold, extra_env),
                  log_dir=str(log_dir))
    suite.start(timeout_s=60)
    try:
        yield suite
    finally:
        suite.stop()


def store_client(suite: Suite) -> Redis:
    return Redis.from_url(suite.redis_url)


async def used_memory(redis: Redis) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"])


async def server_version(redis: Redis) -> str:
    info = await redis.info("server")
    name = "valkey" if "valkey_version" in info else "redis"
    return f"{name} {info.get('valkey_version') or info.get('redis_version')}"
