"""In-process: gRPC spans on both sides with propagated context, statuses (including
INVALID_ARGUMENT with rich details), untraced health checks, and the span-hygiene helpers
(Redis span names and statements, the sampler's rules)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision
from opentelemetry.trace import Link, SpanKind, StatusCode

from fanline.common import clients, telemetry
from fanline.common.config import Settings
from fanline.common.pagination import PageTokens
from fanline.common.server import GrpcServer
from fanline.common.store import Store
from fanline.fanout.app import build_fanout
from fanline.fanout.servicer import FanoutServicer
from fanline.gen.feed.v1 import fanout_pb2_grpc, post_pb2, post_pb2_grpc
from fanline.post.outbox import Outbox
from fanline.post.posts import Posts
from fanline.post.servicer import PostServicer


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=telemetry.RequestSampler(ALWAYS_ON))
    provider.add_span_processor(telemetry.RedisSpanNames())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.configure(provider)
    yield exporter
    telemetry.configure(None)
    provider.shutdown()


@pytest.fixture
async def post_channel(
    store: Store, settings: Settings, spans: InMemorySpanExporter
) -> AsyncIterator[grpc.aio.Channel]:
    """Post and fan-out servers, and a traced channel to the post service."""
    fanout = build_fanout(store, settings)
    tokens = PageTokens(settings.page_token_secrets)
    fanout_server = GrpcServer(
        "127.0.0.1:0", ["feed.v1.FanoutService"],
        lambda s: fanout_pb2_grpc.add_FanoutServiceServicer_to_server(
            FanoutServicer(fanout, tokens), s), grace_s=1)
    fanout_channel = clients.channel(f"127.0.0.1:{await fanout_server.start()}")
    outbox = Outbox(store, clients.fanout_stub(fanout_channel), settings.outbox_retry_ms)
    servicer = PostServicer(Posts(store, outbox, settings.outbox_retry_ms), tokens)
    post_server = GrpcServer(
        "127.0.0.1:0", ["feed.v1.PostService"],
        lambda s: post_pb2_grpc.add_PostServiceServicer_to_server(servicer, s), grace_s=1)
    channel = clients.channel(f"127.0.0.1:{await post_server.start()}")
    yield channel
    await channel.close()
    await fanout_channel.close()
    await post_server.stop()
    await fanout_server.stop()


def named(exporter: InMemorySpanExporter, name: str) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


async def test_context_propagates_post_to_fanout(
    post_channel: grpc.aio.Channel, spans: InMemorySpanExporter, store: Store
) -> None:
    reply = await clients.post_stub(post_channel).CreatePost(
        post_pb2.CreatePostRequest(author_id="alice", text="hi")
    )
    create = {s.kind: s for s in named(spans, "feed.v1.PostService/CreatePost")}
    publish = {s.kind: s for s in named(spans, "feed.v1.FanoutService/PublishPost")}
    assert create[SpanKind.SERVER].parent.span_id == create[SpanKind.CLIENT].context.span_id
    assert publish[SpanKind.CLIENT].parent.span_id == create[SpanKind.SERVER].context.span_id
    assert publish[SpanKind.SERVER].parent.span_id == publish[SpanKind.CLIENT].context.span_id
    trace_ids = {s.context.trace_id for s in (*create.values(), *publish.values())}
    assert len(trace_ids) == 1
    for span in (create[SpanKind.SERVER], publish[SpanKind.SERVER]):
        assert span.attributes["rpc.system"] == "grpc"
        assert span.attributes["rpc.grpc.status_code"] == 0
        assert span.status.status_code is StatusCode.UNSET
    # The delivery record keeps the publishing trace (what GetDelivery.trace_id returns).
    record = await store.queue.delivery(int(reply.post.post_id))
    assert record is not None
    assert record.trace_id == trace.format_trace_id(trace_ids.pop())


async def test_invalid_argument_is_recorded_with_field_violations(
    post_channel: grpc.aio.Channel, spans: InMemorySpanExporter
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await clients.post_stub(post_channel).CreatePost(
            post_pb2.CreatePostRequest(author_id="", text="hi")
        )
    assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    by_kind = {s.kind: s for s in named(spans, "feed.v1.PostService/CreatePost")}
    for kind in (SpanKind.SERVER, SpanKind.CLIENT):
        span = by_kind[kind]
        assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description.startswith("INVALID_ARGUMENT: author_id")
        assert [v.split(":")[0] for v in span.attributes["rpc.grpc.field_violations"]] == [
            "author_id"]


async def test_health_checks_make_no_spans(
    post_channel: grpc.aio.Channel, spans: InMemorySpanExporter
) -> None:
    reply = await health_pb2_grpc.HealthStub(post_channel).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert spans.get_finished_spans() == ()


def test_pipeline_names_are_compacted() -> None:
    assert telemetry.compact_command_names("GET") == "GET"
    assert telemetry.compact_command_names(" ".join(["ZREVRANGEBYSCORE"] * 2000)) == \
        "ZREVRANGEBYSCORE(x2000)"
    assert telemetry.compact_command_names("XACK XDEL XADD HINCRBY HINCRBY HSET") == \
        "XACK XDEL XADD HINCRBY(x2) HSET"
    long = " ".join(f"CMD{i}" for i in range(500))
    compact = telemetry.compact_command_names(long)
    assert len(compact) <= telemetry.SPAN_NAME_MAX and compact.endswith(" more")


def test_script_statement_says_how_many_keys(spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("t", tracer_provider=telemetry._state.tracer_provider)
    with tracer.start_as_current_span("parent"), tracer.start_as_current_span(
        "EVALSHA", kind=SpanKind.CLIENT, attributes={"db.statement": "EVALSHA " + "? " * 500}
    ) as span:
        args = ["EVALSHA", "abc123", 3000, *(f"k{i}" for i in range(3000)), "1", "bob"]
        telemetry.redis_request_hook(span, None, args, {})
    [exported] = named(spans, "EVALSHA")
    assert exported.attributes["db.statement"] == "EVALSHA ? 3000 (+3002 keys and args)"
    assert exported.attributes["db.redis.keys_count"] == 3000


def test_pipeline_statements_are_compacted() -> None:
    statement = "\n".join(["EVALSHA " + " ".join("?" * 301)] * 3 + ["WAIT ? ?"])
    assert telemetry.compact_statement(statement) == "EVALSHA (301 args) (x3)\nWAIT ? ?"


def test_sampler_drops_orphan_store_calls_and_follows_links() -> None:
    sampler = telemetry.RequestSampler(ALWAYS_ON)
    assert sampler.should_sample(None, 1, "XREADGROUP", SpanKind.CLIENT).decision is Decision.DROP
    assert sampler.should_sample(
        None, 1, "feed.v1.FanoutService/PublishPost", SpanKind.CLIENT, {"rpc.system": "grpc"}
    ).decision is Decision.RECORD_AND_SAMPLE
    unsampled = trace.SpanContext(1, 2, is_remote=True, trace_flags=trace.TraceFlags(0))
    sampled = trace.SpanContext(1, 2, is_remote=True, trace_flags=trace.TraceFlags(1))
    assert sampler.should_sample(
        None, 5, "fanout.process", SpanKind.CONSUMER, links=[Link(unsampled)]
    ).decision is Decision.DROP
    assert sampler.should_sample(
        None, 5, "fanout.process", SpanKind.CONSUMER, links=[Link(sampled)]
    ).decision is Decision.RECORD_AND_SAMPLE
