"""Trace context across the fan-out queue: injected by the publisher, stored in stream entry
fields, read back as bytes by the worker, and turned into a link on its processing span."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from fanline.common import telemetry
from fanline.common.config import Settings
from fanline.common.store import Store
from fanline.common.store.records import Job, JobKind
from fanline.fanout import policy
from fanline.fanout.app import build_fanout, build_worker


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.configure(provider)
    yield exporter
    telemetry.configure(None)
    provider.shutdown()


def test_without_setup_everything_is_a_no_op() -> None:
    assert not telemetry.tracing_enabled()
    with telemetry.span("nothing", {"a": 1}) as span:
        assert not span.is_recording()
        assert telemetry.inject_context() == {}
        assert telemetry.current_trace_id() == ""
    assert telemetry.server_interceptors() == [] and telemetry.client_interceptors() == []
    assert not telemetry.extract_span_context({}).is_valid


def test_context_survives_a_stream_entry_as_bytes(spans: InMemorySpanExporter) -> None:
    with telemetry.span("PublishPost") as publisher:
        job = Job(JobKind.POST, author_id="bob", post_id=42, created_ms=1,
                  trace=telemetry.inject_context())
        trace_id = telemetry.current_trace_id()
    assert set(job.trace) >= {"traceparent"}
    assert trace_id == trace.format_trace_id(publisher.get_span_context().trace_id)
    # What XREADGROUP hands back: every field name and value as bytes.
    raw = {k.encode(): v.encode() for k, v in job.fields().items()}
    back = Job.from_fields(raw)  # type: ignore[arg-type]
    assert back.trace == job.trace
    linked = telemetry.extract_span_context(back.trace)
    assert linked.is_valid and linked.is_remote
    assert trace.format_trace_id(linked.trace_id) == trace_id
    assert linked.span_id == publisher.get_span_context().span_id
    # Continuations of the chain keep the publisher's context.
    assert back.batch((3, 5), "f9", "push").trace == job.trace
    assert back.batch((3, 5), "f9", "push").buckets == (3, 5)


async def test_context_survives_a_real_stream(store: Store, spans: InMemorySpanExporter) -> None:
    with telemetry.span("PublishPost"):
        job = Job(JobKind.POST, author_id="bob", post_id=7, trace=telemetry.inject_context())
        trace_id = telemetry.current_trace_id()
    await store.queue.ensure_groups()
    await store.queue.enqueue(job, bounded=False)
    [entry] = await store.queue.read(store.queue.partition_of(job), "w", None)
    linked = telemetry.extract_span_context(entry.job.trace)
    assert trace.format_trace_id(linked.trace_id) == trace_id


async def test_worker_spans_are_linked_roots_with_batch_children(
    store: Store, settings: Settings, spans: InMemorySpanExporter
) -> None:
    s = settings.with_overrides(fanout_batch_size=2)
    fanout = build_fanout(store, s)
    worker = build_worker(store, s, "w1")
    # Five followers of one bucket (so batches of two take 3 entries), all active.
    bucket = store.layout.bucket_of_user("f0")
    followers = [f"f{i}" for i in range(2000) if store.layout.bucket_of_user(f"f{i}") == bucket][:5]
    for follower in followers:
        await fanout.follow(follower, "bob")
    await store.inboxes.touch(followers, int(time.time()))
    created = await store.posts.create("bob", "body", "", 0)
    assert created.post is not None
    post_id = int(created.post.post_id)
    await store.queue.ensure_groups()
    with telemetry.span("PublishPost", kind=SpanKind.SERVER) as publisher:
        await fanout.publish(post_id, "bob", int(time.time() * 1000))
    record = await fanout.delivery(post_id, None)
    assert record.trace_id == trace.format_trace_id(publisher.get_span_context().trace_id)
    while (await store.queue.stats()).depth:
        await worker.step(block_ms=10)

    finished = spans.get_finished_spans()
    process = [sp for sp in finished if sp.name == "fanout.process"]
    # The first entry (the mode, the author's own inbox, the ranges of buckets queued), one
    # entry per range (the followers' range writes 2 of them), and two more for the rest of
    # that bucket: 2 + 2 + 1.
    ranges = policy.bucket_ranges(len(followers), store.layout.buckets, 2)
    assert len(process) == 1 + len(ranges) + 2
    for sp in process:
        assert sp.parent is None and sp.kind is SpanKind.CONSUMER
        assert [link.context.span_id for link in sp.links] == [publisher.get_span_context().span_id]
        assert sp.context.trace_id != publisher.get_span_context().trace_id
        attributes = sp.attributes or {}
        assert attributes["messaging.system"] == "redis"
        assert attributes["messaging.operation"] == "process"
        assert attributes["messaging.destination.name"] == store.queue.stream_name(
            store.layout.partition_of_post(post_id))
        assert attributes["messaging.message.id"]
        assert attributes["fanline.post_id"] == str(post_id)
    ids = {sp.context.span_id for sp in process}
    batches = [sp for sp in finished if sp.name == "fanout.batch"]
    assert {sp.parent.span_id for sp in batches if sp.parent} == ids
    assert sorted((sp.attributes or {})["fanline.batch.size"] for sp in batches) == [0] * len(
        ranges) + [1, 2, 2]
    # Batch spans count follower inboxes; the process spans add the author's own inbox.
    assert sum((sp.attributes or {})["fanline.inbox.writes"] for sp in batches) == 5
    assert sum((sp.attributes or {})["fanline.inbox.writes"] for sp in process) == 6
    assert (await fanout.delivery(post_id, None)).writes == 6
