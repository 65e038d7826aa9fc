"""Delivery and read metrics on a known scenario: a real store, the real worker and reader,
an in-memory metric reader."""

from __future__ import annotations

import time
from collections.abc import Sequence

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from fanline.common import metrics
from fanline.common.clock import now_ms
from fanline.common.config import Settings
from fanline.common.store import Store
from fanline.fanout.app import build_fanout, build_worker
from fanline.fanout.queue import Consumer
from fanline.fanout.service import Fanout
from fanline.gen.feed.v1 import post_pb2
from fanline.timeline.cursor import FIRST_PAGE
from fanline.timeline.reader import TimelineReader
from tests.conftest import points


class FakePosts:
    """PostService stub answering BatchGetPosts with bodies for every id asked."""

    def __init__(self) -> None:
        self.calls = 0

    async def BatchGetPosts(self, request: post_pb2.BatchGetPostsRequest,
                            timeout: float | None = None  # noqa: ASYNC109 (the stub signature)
                            ) -> post_pb2.BatchGetPostsResponse:
        self.calls += 1
        return post_pb2.BatchGetPostsResponse(
            posts=[post_pb2.Post(post_id=i, author_id="x", text="t") for i in request.post_ids]
        )


async def drain(store: Store, worker: Consumer) -> None:
    while (await store.queue.stats()).depth:
        await worker.step(block_ms=10)


async def publish(store: Store, fanout: Fanout, author: str) -> int:
    created = await store.posts.create(author, "hello", "", due_ms=now_ms() + 60_000)
    assert created.post is not None
    await fanout.publish(int(created.post.post_id), author, now_ms())
    return int(created.post.post_id)


async def activate(store: Store, users: Sequence[str]) -> None:
    await store.inboxes.touch(users, int(time.time()))


async def test_delivery_metrics_for_a_push_and_a_pull_post(
    store: Store, settings: Settings, reader: InMemoryMetricReader
) -> None:
    s = settings.with_overrides(celebrity_threshold=6, fanout_batch_size=2)
    fanout = build_fanout(store, s)
    worker = build_worker(store, s, "w1")
    # bob: 5 followers, 4 of them active -> PUSH, 4 + own inbox = 5 writes.
    for fan in ("f1", "f2", "f3", "f4", "idle"):
        await fanout.follow(fan, "bob")
    # star: 6 followers -> PULL, no inbox writes.
    for index in range(6):
        await fanout.follow(f"s{index}", "star")
    await activate(store, ["f1", "f2", "f3", "f4", *(f"s{i}" for i in range(6))])

    await publish(store, fanout, "bob")
    await publish(store, fanout, "star")
    await drain(store, worker)

    published = points(reader, "fanline.posts.published")
    assert {k: p.value for k, p in published.items()} == {
        (("fanline.delivery.mode", "push"),): 1,
        (("fanline.delivery.mode", "pull"),): 1,
    }
    writes = points(reader, "fanline.inbox.writes")
    assert {k: p.value for k, p in writes.items()} == {(("fanline.job.kind", "post"),): 5}
    amplification = points(reader, "fanline.post.write_amplification")
    push = amplification[(("fanline.delivery.mode", "push"),)]
    pull = amplification[(("fanline.delivery.mode", "pull"),)]
    assert (push.count, push.sum) == (1, 5)
    assert (pull.count, pull.sum) == (1, 0)
    lag = points(reader, "fanline.fanout.lag")
    assert sum(p.count for p in lag.values()) == 2
    assert all(0 <= p.min <= p.max < 60_000 for p in lag.values())

    # The gauges report what the worker last read from the store: nothing queued now.
    await worker._observe_queue()
    assert [p.value for p in points(reader, "fanline.queue.depth").values()] == [0]
    assert [p.value for p in points(reader, "fanline.queue.pending").values()] == [0]
    assert [p.value for p in points(reader, "fanline.queue.reclaimed").values()] == [0]
    partitions = points(reader, "fanline.queue.partition.depth")
    assert len(partitions) == store.queue.partitions and \
        all(p.value == 0 for p in partitions.values())


async def test_queue_gauges_are_silent_until_the_worker_has_read_them(
    reader: InMemoryMetricReader,
) -> None:
    assert points(reader, "fanline.queue.depth") == {}
    assert points(reader, "fanline.queue.partition.depth") == {}
    metrics.queue_observed(7, 2, 1, ((5, 2), (0, 0), (2, 0)))
    assert [p.value for p in points(reader, "fanline.queue.depth").values()] == [7]
    assert [p.value for p in points(reader, "fanline.queue.pending").values()] == [2]
    by_partition = {dict(k)["fanline.queue.partition"]: p.value
                    for k, p in points(reader, "fanline.queue.partition.depth").items()}
    assert by_partition == {0: 5, 1: 0, 2: 2}
    assert {dict(k)["fanline.queue.partition"]: p.value for k, p in
            points(reader, "fanline.queue.partition.pending").items()} == {0: 2, 1: 0, 2: 0}


async def test_timeline_latency_by_path_and_cache_lookups(
    store: Store, settings: Settings, reader: InMemoryMetricReader
) -> None:
    s = settings.with_overrides(celebrity_threshold=3)
    fanout = build_fanout(store, s)
    worker = build_worker(store, s, "w1")
    for fan in ("fan", "other", "third"):  # star: 3 followers -> PULL
        await fanout.follow(fan, "star")
    await fanout.follow("fan", "bob")  # bob: 2 followers -> PUSH
    await fanout.follow("plain", "bob")
    await activate(store, ["fan", "plain", "other", "third"])
    for author in ("bob", "star", "bob"):
        await publish(store, fanout, author)
    await drain(store, worker)

    posts = FakePosts()
    timeline = TimelineReader(store, posts, s)  # type: ignore[arg-type]
    merged = await timeline.read("fan", 10, FIRST_PAGE)  # inbox + star's pulled list
    again = await timeline.read("fan", 10, FIRST_PAGE)
    plain = await timeline.read("plain", 10, FIRST_PAGE)  # inbox only
    assert len(merged.entries) == len(again.entries) == 3 and len(plain.entries) == 2

    duration = points(reader, "fanline.timeline.duration")
    counts = {dict(k)["fanline.timeline.path"]: p.count for k, p in duration.items()}
    assert counts == {"merged": 2, "inbox_only": 1}
    assert all(dict(k)["fanline.timeline.partial"] is False for k in duration)
    pulled = {dict(k)["fanline.cache.result"]: p.value
              for k, p in points(reader, "fanline.timeline.pulled_cache").items()}
    # One load, then hits (the page that exhausts the inbox also reads star's list from the
    # archive side, through the same cache): the same counts the reader keeps itself.
    assert pulled == {"miss": 1, "hit": timeline.sources.pulled_hits}
    assert timeline.sources.pulled_hits >= 1 and timeline.sources.pulled_misses == 1
    bodies = {dict(k)["fanline.cache.result"]: p.value
              for k, p in points(reader, "fanline.timeline.body_cache").items()}
    # First read: 3 misses (one BatchGetPosts); second: 3 hits; plain: its 2 are cached too.
    assert bodies == {"miss": 3, "hit": 5}
    assert posts.calls == 1
