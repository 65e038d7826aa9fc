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
from redis.asyncio import Redis

from services.common import keys, telemetry
from services.common.config import Settings
from services.fanout.queue import Job, JobKind
from services.fanout.service import Fanout
from services.fanout.worker import Worker


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
        job = Job(JobKind.POST, author_id="bob", post_id="42", created_ms=1,
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
    assert back.next_batch("f9", "push").trace == job.trace


async def test_context_survives_a_real_stream(redis: Redis, spans: InMemorySpanExporter) -> None:
    with telemetry.span("PublishPost"):
        job = Job(JobKind.POST, author_id="bob", post_id="7", trace=telemetry.inject_context())
        trace_id = telemetry.current_trace_id()
    await redis.xadd("ctx-test", job.fields())  # type: ignore[arg-type]
    [(_entry_id, fields)] = await redis.xrange("ctx-test")
    assert all(isinstance(k, bytes) for k in fields)
    linked = telemetry.extract_span_context(Job.from_fields(fields).trace)
    assert trace.format_trace_id(linked.trace_id) == trace_id


async def test_worker_spans_are_linked_roots_with_batch_children(
    redis: Redis, settings: Settings, spans: InMemorySpanExporter
) -> None:
    s = settings.with_overrides(fanout_batch_size=2)
    fanout = Fanout(redis, s)
    await fanout.start()
    worker = Worker(redis, s, fanout.graph, fanout.modes, fanout.inboxes, fanout.queue, "w1")
    followers = [f"f{i}" for i in range(5)]
    for follower in followers:
        await fanout.follow(follower, "bob")
    await redis.mset({keys.last_seen(f): int(time.time()) for f in followers})
    await redis.set(keys.post("100"), b"body")
    with telemetry.span("PublishPost", kind=SpanKind.SERVER) as publisher:
        await fanout.publish("100", "bob", int(time.time() * 1000))
    record = await fanout.queue.delivery("100")
    assert record["trace_id"] == trace.format_trace_id(publisher.get_span_context().trace_id)
    while await redis.xlen(keys.fanout_stream()):
        await worker.step(block_ms=10)

    finished = spans.get_finished_spans()
    process = [sp for sp in finished if sp.name == "fanout.process"]
    assert len(process) == 3  # 5 followers in batches of 2: 2 + 2 + 1
    for sp in process:
        assert sp.parent is None and sp.kind is SpanKind.CONSUMER
        assert [link.context.span_id for link in sp.links] == [publisher.get_span_context().span_id]
        assert sp.context.trace_id != publisher.get_span_context().trace_id
        attributes = sp.attributes or {}
        assert attributes["messaging.system"] == "redis"
        assert attributes["messaging.operation"] == "process"
        assert attributes["messaging.destination.name"] == keys.fanout_stream()
        assert attributes["messaging.message.id"]
        assert attributes["fanline.post_id"] == "100"
    ids = {sp.context.span_id for sp in process}
    batches = [sp for sp in finished if sp.name == "fanout.batch"]
    assert {sp.parent.span_id for sp in batches if sp.parent} == ids
    assert sorted((sp.attributes or {})["fanline.batch.size"] for sp in batches) == [1, 2, 2]
    # Batch spans count follower inboxes; the process spans add the author's own inbox.
    assert sum((sp.attributes or {})["fanline.inbox.writes"] for sp in batches) == 5
    assert sum((sp.attributes or {})["fanline.inbox.writes"] for sp in process) == 6
    assert int((await fanout.queue.delivery("100"))["writes"]) == 6
