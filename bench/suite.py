"""A fresh suite (own embedded store, services, workers) per measurement."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from fanline.common.config import load_settings
from fanline.common.embedded import free_port
from fanline.common.store import Store, open_store
from fanline.launcher import Suite

PUSH_ONLY_THRESHOLD = 10**12  # no account has that many followers: every author pushes


def suite_env(threshold: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        # Empty = a new embedded store, whatever the caller's shell points at: each
        # strategy must start from an empty store.
        "FANLINE_REDIS_URL": "",
        "FANLINE_REDIS_MODE": "single",  # a cluster suite sets it (running_suite(cluster=N))
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
                  extra_env: Mapping[str, str] | None = None,
                  cluster: int = 0) -> Iterator[Suite]:
    """A suite on a fresh embedded store: one node, or a cluster of `cluster` masters."""
    os.makedirs(log_dir, exist_ok=True)
    suite = Suite(workers=workers, extra_env=suite_env(threshold, extra_env),
                  log_dir=str(log_dir), cluster_masters=cluster)
    suite.start(timeout_s=60)
    try:
        yield suite
    finally:
        suite.stop()


async def suite_store(suite: Suite) -> Store:
    """The storage layer of a running suite, as its processes use it."""
    return await open_store(load_settings(suite.env))


async def node_infos(store: Store, section: str) -> dict[str, dict[str, object]]:
    """INFO `section` of every primary, by host:port."""
    out: dict[str, dict[str, object]] = {}
    for name, client in store.client.node_clients().items():
        try:
            out[name] = await client.info(section)
        finally:
            await client.aclose()
    return out


async def used_memory(store: Store) -> int:
    """Bytes used by the store, summed over its primaries."""
    return sum(int(info["used_memory"]) for info in (await node_infos(store, "memory")).values())


async def server_version(store: Store) -> str:
    infos = await node_infos(store, "server")
    info = next(iter(infos.values()))
    name = "valkey" if "valkey_version" in info else "redis"
    kind = f", cluster of {len(infos)} masters" if store.client.cluster else ""
    return f"{name} {info.get('valkey_version') or info.get('redis_version')}{kind}"


async def store_cpu_s(store: Store) -> dict[str, float]:
    """CPU seconds (user + system) each primary has used since it started."""
    return {name: float(info["used_cpu_user"]) + float(info["used_cpu_sys"])  # type: ignore[arg-type]
            for name, info in (await node_infos(store, "cpu")).items()}
