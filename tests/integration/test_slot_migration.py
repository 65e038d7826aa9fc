"""A bucket's slot moving to another master while posts are created and fanned out: calls are
redirected (ASK, MOVED) or told to try again (TRYAGAIN) and retried; nothing is lost or
counted twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

from fanline.common.embedded import EmbeddedCluster
from fanline.common.store.layout import slot_of
from tests.conftest import CLUSTER_MASTERS, StoreServer, async_wait_for
from tests.integration.conftest import Stack

FOLLOWERS = [f"mv{i:03d}" for i in range(300)]
AUTHOR = "mover"


@pytest.fixture(scope="module")
def store_server() -> Iterator[StoreServer]:
    """A cluster only: slots move between its masters."""
    with EmbeddedCluster(CLUSTER_MASTERS) as server:
        yield StoreServer("cluster", server)


def node_id(port: int) -> str:
    with redis.Redis(port=port, decode_responses=True) as node:
        return str(node.execute_command("CLUSTER", "MYID"))


def migrate_slot(slot: int, source: int, target: int, others: list[int]) -> int:
    """Move `slot` from one master to another the way `valkey-cli --cluster reshard` does:
    mark it importing and migrating, move its keys a few at a time, then give it to the
    target everywhere. Returns how many keys moved."""
    source_id, target_id = node_id(source), node_id(target)
    moved = 0
    with redis.Redis(port=source) as src, redis.Redis(port=target) as dst:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 5):
            src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
        for port in (target, source, *others):
            with redis.Redis(port=port) as node:
                node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    return moved


async def test_fanout_survives_its_buckets_slot_moving(make_stack,
                                                       store_server: StoreServer) -> None:
    cluster = store_server.server
    assert isinstance(cluster, EmbeddedCluster)
    stack: Stack = await make_stack(fanout_batch_size=10)
    store = stack.store
    await store.graph.add_edges(AUTHOR, FOLLOWERS)
    await stack.activate(*FOLLOWERS)
    # The author's bucket: their posts, outbox and post list, and some followers' inboxes.
    slot = slot_of(store.layout.author_posts(AUTHOR))
    source = int(store.client.node_of(store.layout.author_posts(AUTHOR)).rsplit(":", 1)[1])
    target, *others = [p for p in cluster.masters() if p != source]

    stop = asyncio.Event()
    worker = asyncio.create_task(stack.worker.run(stop))
    before = [await stack.post(AUTHOR, f"before {i}") for i in range(4)]
    migration = asyncio.create_task(asyncio.to_thread(migrate_slot, slot, source, target, others))
    during = []
    while not migration.done():
        during.append(await stack.post(AUTHOR, f"during {len(during)}"))
    moved = await migration
    after = [await stack.post(AUTHOR, f"after {i}") for i in range(3)]
    posts = before + during + after
    assert moved > 0 and during  # the slot held keys, and posts were made while they moved

    async def delivered() -> bool:
        records = await store.queue.deliveries([int(p.post_id) for p in posts])
        return all(r is not None and r.state and r.state.value == "delivered" for r in records)

    await async_wait_for(delivered, 30, message="every post delivered")
    stop.set()
    await worker
    records = await store.queue.deliveries([int(p.post_id) for p in posts])
    assert all(r is not None and r.writes == len(FOLLOWERS) + 1 for r in records)  # once each
    assert int(store.client.node_of(store.layout.author_posts(AUTHOR)).rsplit(":", 1)[1]) == target
    expected = sorted((int(p.post_id) for p in posts), reverse=True)
    assert await store.posts.author_ids(AUTHOR, None, 100) == expected
    for follower in FOLLOWERS[::15]:
        assert await store.inboxes.all_ids(follower) == expected, follower
