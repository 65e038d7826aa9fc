"""Fan-out on a real store: push, pull, batches, reclaim, backfill, purge, bounds."""

from __future__ import annotations

import grpc
import pytest

from fanline.common.store.records import DeliveryState
from fanline.fanout.policy import Mode
from fanline.gen.feed.v1 import fanout_pb2, post_pb2
from fanline.post.outbox import Outbox
from tests.conftest import async_wait_for
from tests.integration.conftest import Stack


async def follow_all(stack: Stack, author: str, followers: list[str]) -> None:
    for f in followers:
        await stack.fanout.follow(f, author)


async def test_push_reaches_active_followers_and_own_inbox_and_skips_inactive(make_stack) -> None:
    stack: Stack = await make_stack()
    active, inactive = ["a1", "a2", "a3"], ["i1", "i2"]
    await follow_all(stack, "bob", active + inactive)
    await stack.activate(*active)
    post = await stack.post("bob")
    await stack.drain()
    for user in [*active, "bob"]:
        assert await stack.inbox(user) == [int(post.post_id)]
    for user in inactive:
        assert await stack.inbox(user) == []
    delivery = await stack.fanout_stub.GetDelivery(fanout_pb2.GetDeliveryRequest(post_id=post.post_id))
    assert delivery.state == fanout_pb2.DELIVERY_STATE_DELIVERED
    assert delivery.delivery_mode == fanout_pb2.DELIVERY_MODE_PUSH
    assert (delivery.followers_targeted, delivery.inbox_writes) == (5, 4)
    stats = await stack.fanout.stats()
    assert (stats.posts_published, stats.inbox_writes, stats.skipped_inactive) == (1, 4, 2)
    assert stats.write_amplification == 4.0
    assert stats.depth == 0


async def test_big_fanout_is_batched_and_small_posts_interleave(make_stack) -> None:
    stack: Stack = await make_stack(fanout_batch_size=3)
    fans = [f"f{i:02d}" for i in range(30)]
    await follow_all(stack, "big", fans)
    await follow_all(stack, "small", ["s1"])
    await stack.activate(*fans, "s1")
    big = await stack.post("big")
    small = await stack.post("small")
    steps_until_small = 0
    while True:
        await stack.worker.step(block_ms=10)
        steps_until_small += 1
        d = await stack.fanout.delivery(int(small.post_id), None)
        if d.state is DeliveryState.DELIVERED:
            break
    assert steps_until_small <= 2  # one big batch, then the small post: not 11 batches later
    assert (await stack.fanout.delivery(int(big.post_id), None)).state is DeliveryState.DELIVERING
    await stack.drain()
    d = await stack.fanout.delivery(int(big.post_id), None)
    assert d.state is DeliveryState.DELIVERED and d.writes == 31
    assert [await stack.inbox(f) for f in fans] == [[int(big.post_id)]] * len(fans)


async def test_entry_of_a_dead_worker_is_reclaimed_and_redone_without_duplicates(make_stack) -> None:
    stack: Stack = await make_stack(claim_idle_ms=1)
    await follow_all(stack, "bob", ["a", "b"])
    await stack.activate("a", "b")
    post = await stack.post("bob")
    # A worker takes the entry, writes one inbox, and dies before acknowledging.
    partition = stack.store.layout.partition_of_post(int(post.post_id))
    assert await stack.store.queue.read(partition, "dead", 10)
    await stack.store.inboxes.push(int(post.post_id), "bob", stack.store.inboxes.group(["a"]),
                                   800, 0)
    # Once the entry has been idle past claim_idle_ms, another worker reclaims and redoes it.
    await async_wait_for(lambda: stack.worker.step(block_ms=10), message="reclaim")
    assert await stack.inbox("a") == [int(post.post_id)]
    assert await stack.inbox("b") == [int(post.post_id)]
    d = await stack.fanout.delivery(int(post.post_id), None)
    assert d.state is DeliveryState.DELIVERED and d.writes == 3  # a, b, bob: counted once
    stats = await stack.fanout.stats()
    assert (stats.reclaimed, stats.pending, stats.depth) == (1, 0, 0)


async def test_pull_author_is_written_once_and_pushed_nowhere(make_stack) -> None:
    stack: Stack = await make_stack(celebrity_threshold=3)
    await follow_all(stack, "star", ["x", "y", "z"])
    await stack.activate("x", "y", "z", "star")
    assert (await stack.fanout.author("star")).mode is Mode.PULL
    post = await stack.post("star")
    await stack.drain()
    assert [await stack.inbox(u) for u in ("x", "y", "z", "star")] == [[]] * 4
    assert await stack.store.posts.author_ids("star", None, 10) == [int(post.post_id)]
    d = await stack.fanout_stub.GetDelivery(fanout_pb2.GetDeliveryRequest(post_id=post.post_id))
    assert d.delivery_mode == fanout_pb2.DELIVERY_MODE_PULL and d.inbox_writes == 0
    stats = await stack.fanout.stats()
    assert (stats.posts_pull, stats.inbox_writes, stats.write_amplification) == (1, 0, 0.0)


async def test_follow_backfills_and_unfollow_purges(make_stack) -> None:
    stack: Stack = await make_stack()
    posts = [await stack.post("bob", f"p{i}") for i in range(3)]
    other = await stack.post("carol")
    await stack.drain()
    await stack.fanout.follow("reader", "carol")
    await stack.fanout.follow("reader", "bob")
    expected = sorted([int(p.post_id) for p in [*posts, other]], reverse=True)
    assert await stack.inbox("reader") == expected
    await stack.fanout.unfollow("reader", "bob")
    assert await stack.inbox("reader") == [int(other.post_id)]
    await stack.fanout.unfollow("reader", "bob")  # idempotent


async def test_batch_queued_before_an_unfollow_does_not_resurrect_the_author(make_stack) -> None:
    stack: Stack = await make_stack()
    await follow_all(stack, "bob", ["reader"])
    await stack.activate("reader")
    post = await stack.post("bob")
    await stack.fanout.unfollow("reader", "bob")
    await stack.drain()
    assert int(post.post_id) not in await stack.inbox("reader")


async def test_deleted_post_is_retracted_from_inboxes(make_stack) -> None:
    stack: Stack = await make_stack()
    await follow_all(stack, "bob", ["a", "b"])
    await stack.activate("a", "b")
    post = await stack.post("bob")
    await stack.drain()
    await stack.posts.DeletePost(post_pb2.DeletePostRequest(post_id=post.post_id, author_id="bob"))
    await stack.drain()
    assert [await stack.inbox(u) for u in ("a", "b", "bob")] == [[], [], []]
    assert await stack.store.posts.author_ids("bob", None, 10) == []


async def test_full_queue_refuses_publish_but_the_post_is_kept_and_delivered_later(make_stack) -> None:
    stack: Stack = await make_stack(queue_max=1)
    await follow_all(stack, "bob", ["a"])
    await stack.activate("a")
    first = await stack.post("bob", "one")
    # Another post of bob's bucket (so of the same queue partition), far in the future.
    later = int(first.post_id) + stack.store.layout.buckets * 10**12
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.fanout_stub.PublishPost(
            fanout_pb2.PublishPostRequest(post=post_pb2.Post(post_id=str(later), author_id="bob"))
        )
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    second = await stack.post("bob", "two")  # stored; its hand-off waits in the outbox
    assert await stack.store.posts.outbox_pending() == 1
    await stack.drain()
    drained = await Outbox(stack.store, stack.fanout_stub, 1).drain_once(now_ms=2**62)
    assert drained == 1
    await stack.drain()
    assert await stack.inbox("a") == sorted([int(first.post_id), int(second.post_id)], reverse=True)


async def test_publish_is_idempotent_per_post(make_stack) -> None:
    stack: Stack = await make_stack()
    post = await stack.post("bob")
    await stack.fanout_stub.PublishPost(fanout_pb2.PublishPostRequest(post=post))
    assert (await stack.fanout.stats()).posts_published == 1
    assert (await stack.fanout.stats()).depth == 1
