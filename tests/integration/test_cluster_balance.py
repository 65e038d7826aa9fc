"""A fan-out to thousands of followers spreads over every master of a cluster: its keys and its
inbox writes, each master within 15% of an even share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from fanline.common.embedded import EmbeddedCluster
from tests.conftest import CLUSTER_MASTERS, StoreServer
from tests.integration.conftest import Stack

FOLLOWERS = [f"spread{i:05d}" for i in range(3000)]
EVEN = 0.15


@pytest.fixture(scope="module")
def store_server() -> Iterator[StoreServer]:
    with EmbeddedCluster(CLUSTER_MASTERS) as server:
        yield StoreServer("cluster", server)


def zadd_calls(port: int) -> int:
    with redis.Redis(port=port) as node:
        stat = node.info("commandstats").get("cmdstat_zadd", {})
        return int(stat.get("calls", 0)) if isinstance(stat, dict) else 0


def keys_held(port: int) -> int:
    with redis.Redis(port=port) as node:
        return int(node.dbsize())


def assert_even(shares: list[int]) -> None:
    mean = sum(shares) / len(shares)
    assert all(abs(s - mean) / mean <= EVEN for s in shares), shares


async def test_a_big_fanout_spreads_keys_and_writes_over_every_master(
        make_stack, store_server: StoreServer) -> None:
    cluster = store_server.server
    assert isinstance(cluster, EmbeddedCluster)
    stack: Stack = await make_stack()
    await stack.store.graph.add_edges("spreader", FOLLOWERS)
    await stack.activate(*FOLLOWERS)
    masters = cluster.masters()
    assert len(masters) == CLUSTER_MASTERS
    before = [zadd_calls(p) for p in masters]
    post = await stack.post("spreader", "to three thousand")  # handed to fan-out before it returns
    await stack.drain()
    record = await stack.store.queue.delivery(int(post.post_id))
    assert record is not None and record.writes == len(FOLLOWERS) + 1
    writes = [zadd_calls(p) - b for p, b in zip(masters, before, strict=True)]
    assert sum(writes) >= len(FOLLOWERS)
    assert_even(writes)
    assert_even([keys_held(p) for p in masters])
