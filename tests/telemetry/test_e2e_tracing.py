"""End to end: the services as real processes export to a real OTLP/gRPC receiver; assert on
what arrived, per path."""

from __future__ import annotations

import collections
import secrets
from collections.abc import Callable

import grpc
import pytest

from fanline.common.config import load_settings
from fanline.common.store.layout import Layout
from fanline.fanout import policy
from fanline.gen.feed.v1 import fanout_pb2, post_pb2, timeline_pb2
from fanline.launcher import Suite
from tests.conftest import wait_for
from tests.e2e.helpers import Clients
from tests.telemetry.otlp import CLIENT, CONSUMER, SERVER, Collector, ExportedSpan

pytestmark = pytest.mark.e2e

THRESHOLD = 12  # star (12 followers) is PULL; alice (10) is PUSH
BATCH = 3
SERVICES = {"fanline-post", "fanline-fanout", "fanline-timeline", "fanline-worker"}
ERROR = 2
SLOW = 60.0  # generous: a loaded 2-core CI machine runs six processes here
DEFAULTS = load_settings({})


def traceparent() -> tuple[str, tuple[tuple[str, str]]]:
    """A caller's own trace context, so the test knows which trace each request starts."""
    trace_id = secrets.token_hex(16)
    return trace_id, (("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01"),)


def expected_batches(followers: list[str]) -> list[int]:
    """Followers per fan-out entry of a post, as the layout and the batching policy split them:
    the first entry (no followers: it queues the bucket ranges), one entry per range (up to a
    batch from each of its buckets), then one more per further batch of a bucket."""
    layout = Layout(DEFAULTS.store_buckets, DEFAULTS.queue_partitions)
    per_bucket = collections.Counter(layout.bucket_of_user(f) for f in followers)
    sizes = [0]
    for lo, hi in policy.bucket_ranges(len(followers), layout.buckets, BATCH):
        sizes.append(sum(min(BATCH, per_bucket[b]) for b in range(lo, hi)))
        for bucket in range(lo, hi):
            sizes += [min(BATCH, per_bucket[bucket] - done)
                      for done in range(BATCH, per_bucket[bucket] + 1, BATCH)]
    return sorted(sizes)


def one(spans: list[ExportedSpan], match: Callable[[ExportedSpan], bool]) -> ExportedSpan:
    found = [s for s in spans if match(s)]
    assert len(found) == 1, f"expected one span, got {[(s.service, s.name) for s in found]}"
    return found[0]


def test_traces_of_the_write_and_read_paths(collector: Collector,
                                            make_suite: Callable[..., Suite]) -> None:
    # The collector is set up first, so it is stopped last: the suite's processes flush their
    # last spans to it on the way out instead of retrying against a closed port.
    suite = make_suite(
        workers=1,
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_METRIC_EXPORT_INTERVAL="500",
        FANLINE_FANOUT_BATCH_SIZE=str(BATCH),
        FANLINE_CELEBRITY_THRESHOLD=str(THRESHOLD),
        FANLINE_TIMELINE_BUDGET_MS="5000",  # a slow machine must not turn this into `partial`
    )
    api = Clients.of(suite)
    fans = [f"fan{i}" for i in range(9)]
    alice_followers = ["reader", *fans]
    for user in alice_followers:
        api.follow(user, "alice")
    for user in ["reader", *(f"s{i}" for i in range(THRESHOLD - 1))]:
        api.follow(user, "star")
    for user in alice_followers:  # fan-out pushes only to readers seen recently
        api.page(user)
    for _ in range(2):
        api.wait_delivered(api.post("star", "from the stage").post_id, SLOW)

    # -- write path: CreatePost -> PublishPost in one trace, linked worker traces -----------
    watch = api.watch("reader")  # and a live timeline that receives the post
    write_trace, metadata = traceparent()
    post = api.posts.CreatePost(
        post_pb2.CreatePostRequest(author_id="alice", text="hello fans"), metadata=metadata
    ).post
    delivery = api.wait_delivered(post.post_id, SLOW)
    try:
        assert watch.entries(1, SLOW) == [post.post_id]
    finally:
        watch.close()
    assert delivery.trace_id == write_trace
    assert delivery.delivery_mode == fanout_pb2.DELIVERY_MODE_PUSH
    assert delivery.inbox_writes == len(alice_followers) + 1  # followers + alice's own inbox

    # -- read path ---------------------------------------------------------------------------
    read_trace, metadata = traceparent()
    page = api.timeline.GetTimeline(
        timeline_pb2.GetTimelineRequest(user_id="reader", page_size=20), metadata=metadata
    )
    assert [e.post.author_id for e in page.entries] == ["alice", "star", "star"]
    assert not page.partial

    # -- an invalid request ------------------------------------------------------------------
    bad_trace, metadata = traceparent()
    with pytest.raises(grpc.RpcError) as failure:
        api.posts.CreatePost(post_pb2.CreatePostRequest(author_id="", text="x"), metadata=metadata)
    assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    # -- wait for the exports ----------------------------------------------------------------
    def worker_spans() -> tuple[list[ExportedSpan], list[ExportedSpan]]:
        spans = collector.snapshot()
        process = [s for s in spans if s.name == "fanout.process"
                   and any(t == write_trace for t, _ in s.links)]
        ids = {s.span_id for s in process}
        return process, [s for s in spans if s.name == "fanout.batch" and s.parent_id in ids]

    def arrived() -> bool:
        process, batches = worker_spans()
        read = {s.name for s in collector.trace(read_trace)}
        return (
            sum(b.attributes.get("fanline.inbox.writes", 0) for b in batches) >= len(fans) + 1
            and len(process) == len(batches)
            and {"feed.v1.FanoutService/PublishPost"} <= {s.name for s in collector.trace(write_trace)}
            and {"timeline.inbox", "timeline.pulled", "timeline.hydrate",
                 "feed.v1.PostService/BatchGetPosts", "feed.v1.TimelineService/GetTimeline"} <= read
            and any(s.service == "fanline-post" for s in collector.trace(bad_trace))
            and {"timeline.watch.send", "feed.v1.TimelineService/WatchTimeline"}
            <= {s.name for s in collector.snapshot()}
            and "fanline.posts.published" in collector.metrics
            and "fanline.timeline.duration" in collector.metrics
        )

    wait_for(arrived, SLOW, interval_s=0.1, message="spans and metrics at the OTLP receiver")
    everything = collector.snapshot()

    # One trace from CreatePost through PublishPost, across the process boundary.
    written = collector.trace(write_trace)
    create = one(written, lambda s: s.name == "feed.v1.PostService/CreatePost")
    assert (create.service, create.kind) == ("fanline-post", SERVER)
    publish_client = one(written, lambda s: s.name == "feed.v1.FanoutService/PublishPost"
                         and s.kind == CLIENT)
    publish_server = one(written, lambda s: s.name == "feed.v1.FanoutService/PublishPost"
                         and s.kind == SERVER)
    assert publish_client.service == "fanline-post" and publish_client.parent_id == create.span_id
    assert publish_server.service == "fanline-fanout"
    assert publish_server.parent_id == publish_client.span_id
    assert any(s.attributes.get("db.system") == "redis" and s.service == "fanline-fanout"
               for s in written), "the enqueue script call is a Redis span of PublishPost"

    # The worker: one linked trace per entry, batch spans adding up to the followers.
    process, batches = worker_spans()
    sizes = expected_batches(alice_followers)
    assert len(process) == len(sizes)
    for span in process:
        assert span.service == "fanline-worker" and span.kind == CONSUMER
        assert span.parent_id == "" and span.trace_id != write_trace
        assert span.links == [(write_trace, publish_server.span_id)]
        assert span.attributes["messaging.system"] == "redis"
        assert span.attributes["messaging.operation"] == "process"
        assert span.attributes["messaging.message.id"]
        assert span.attributes["fanline.post_id"] == post.post_id
    assert sum(b.attributes["fanline.inbox.writes"] for b in batches) == len(alice_followers)
    assert sorted(b.attributes["fanline.batch.size"] for b in batches) == sizes
    assert sum(p.attributes["fanline.inbox.writes"] for p in process) == delivery.inbox_writes
    last = one(process, lambda s: s.attributes["fanline.chain.done"])
    assert last.attributes["fanline.delivery.state"] == "delivered"
    scripts = [s for s in everything if s.name.startswith("EVALSHA")
               and s.parent_id in {b.span_id for b in batches}]
    assert scripts and all(len(s.attributes["db.statement"]) < 100 for s in scripts)
    # One call per bucket of a batch: its followers' (inbox, stamp) and the follow edges.
    counted = [s.attributes["db.redis.keys_count"] for s in scripts
               if "db.redis.keys_count" in s.attributes]
    assert counted and max(counted) <= 1 + 2 * BATCH

    # The live timeline's send: its own trace, linked to the request that published the post
    # and to the stream it was sent on.
    send = one(everything, lambda s: s.name == "timeline.watch.send")
    stream = one(everything, lambda s: s.name == "feed.v1.TimelineService/WatchTimeline")
    assert send.service == stream.service == "fanline-timeline"
    assert send.parent_id == "" and send.attributes["fanline.post_id"] == post.post_id
    assert send.links == [(write_trace, publish_server.span_id), (stream.trace_id, stream.span_id)]

    # The read: stages as spans, sources overlapping, hydrate crossing into the post service.
    read = collector.trace(read_trace)
    request = one(read, lambda s: s.name == "feed.v1.TimelineService/GetTimeline")
    assert request.service == "fanline-timeline" and request.kind == SERVER
    assert request.attributes["fanline.timeline.partial"] is False
    assert request.attributes["fanline.timeline.path"] == "merged"
    inbox = one(read, lambda s: s.name == "timeline.inbox")
    pulled = one(read, lambda s: s.name == "timeline.pulled" and s.parent_id == inbox.parent_id)
    assert pulled.attributes["fanline.author_id"] == "star"
    assert inbox.overlaps(pulled), "the inbox and the pulled list are read in parallel"
    assert any(s.parent_id == inbox.span_id and s.attributes.get("db.system") == "redis"
               for s in read)
    hydrate = one(read, lambda s: s.name == "timeline.hydrate")
    # alice's post was fetched for the live timeline already: the same process's cache.
    assert hydrate.attributes["fanline.cache.misses"] == 2
    assert hydrate.attributes["fanline.cache.hits"] == 1
    batch_client = one(read, lambda s: s.name == "feed.v1.PostService/BatchGetPosts"
                       and s.kind == CLIENT)
    batch_server = one(read, lambda s: s.name == "feed.v1.PostService/BatchGetPosts"
                       and s.kind == SERVER)
    assert batch_client.service == "fanline-timeline" and batch_client.parent_id == hydrate.span_id
    assert batch_server.service == "fanline-post" and batch_server.parent_id == batch_client.span_id
    merges = [s for s in read if s.name == "timeline.merge"]
    assert merges and all(s.parent_id == inbox.parent_id for s in merges)

    # The rejected request: an error span with the status and the offending field.
    rejected = one(collector.trace(bad_trace), lambda s: s.kind == SERVER)
    assert rejected.status_code == ERROR
    assert rejected.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert rejected.attributes["rpc.grpc.field_violations"][0].startswith("author_id:")

    # Hygiene: every service named, no health checks, no giant names.
    assert {s.service for s in everything} >= SERVICES
    assert not [s.name for s in everything if "grpc.health" in s.name or "reflection" in s.name]
    assert max(len(s.name) for s in everything) <= 80
    # Store calls outside any request (worker polling, outbox drains) are not traces of their own.
    assert all(s.parent_id for s in everything if s.attributes.get("db.system") == "redis")
    assert "fanline-worker" in collector.metrics["fanline.posts.published"]

