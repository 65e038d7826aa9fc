"""Tracing overhead on GetTimeline: median latency with tracing exporting vs disabled.

Two suites run side by side on the same machine, seeded identically: one exports traces and
metrics over OTLP/gRPC to a receiver started here (it accepts and counts, like a collector
would), one has the SDK disabled. Requests alternate between them (A, B, B, A, ...: who goes
first rotates) so machine noise lands on both equally; the figures are client-side latencies
of sequential calls.

    python -m fanline.bench.trace_overhead [--requests 2000] [--warmup 200] [--sampled-ratio 0.01]

--sampled-ratio adds a third suite exporting with OTEL_TRACES_SAMPLER=parentbased_traceidratio.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import threading
import time
from concurrent import futures

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from fanline.bench.stats import percentile
from fanline.bench.suite import running_suite
from fanline.gen.feed.v1 import (
    fanout_pb2,
    fanout_pb2_grpc,
    post_pb2,
    post_pb2_grpc,
    timeline_pb2,
    timeline_pb2_grpc,
)
from fanline.launcher import Suite

THRESHOLD = 20  # "star" (25 followers) is pulled; the other authors are pushed


class Sink(trace_service_pb2_grpc.TraceServiceServicer, metrics_service_pb2_grpc.MetricsServiceServicer):
    """An OTLP receiver that only counts what it is sent."""

    def __init__(self) -> None:
        self.spans = 0
        self._lock = threading.Lock()

    def Export(self, request: object, context: grpc.ServicerContext) -> object:
        if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
            with self._lock:
                self.spans += sum(len(s.spans) for r in request.resource_spans
                                  for s in r.scope_spans)
            return trace_service_pb2.ExportTraceServiceResponse()
        return metrics_service_pb2.ExportMetricsServiceResponse()


def start_sink() -> tuple[Sink, grpc.Server, int]:
    sink = Sink()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(sink, server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(sink, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return sink, server, port


def seed(suite: Suite, authors: int, posts_per_author: int) -> timeline_pb2_grpc.TimelineServiceStub:
    """A reader following `authors` pushed authors and one pulled celebrity, all posting."""
    posts = post_pb2_grpc.PostServiceStub(grpc.insecure_channel(suite.post_addr))
    fanout = fanout_pb2_grpc.FanoutServiceStub(grpc.insecure_channel(suite.fanout_addr))
    timeline = timeline_pb2_grpc.TimelineServiceStub(grpc.insecure_channel(suite.timeline_addr))
    names = [f"author{i}" for i in range(authors)]
    for name in [*names, "star"]:
        fanout.Follow(fanout_pb2.FollowRequest(follower_id="reader", followee_id=name))
    for index in range(THRESHOLD + 4):
        fanout.Follow(fanout_pb2.FollowRequest(follower_id=f"fan{index}", followee_id="star"))
    timeline.GetTimeline(timeline_pb2.GetTimelineRequest(user_id="reader"))  # now active
    last = ""
    for round_ in range(posts_per_author):
        for name in [*names, "star"]:
            last = posts.CreatePost(
                post_pb2.CreatePostRequest(author_id=name, text=f"post {round_} by {name}")
            ).post.post_id
    deadline = time.monotonic() + 60
    while fanout.GetDelivery(fanout_pb2.GetDeliveryRequest(post_id=last)).state != \
            fanout_pb2.DELIVERY_STATE_DELIVERED:
        if time.monotonic() > deadline:
            raise TimeoutError("seed posts not delivered")
        time.sleep(0.05)
    return timeline


def measure(stubs: dict[str, timeline_pb2_grpc.TimelineServiceStub], requests: int,
            warmup: int, page_size: int) -> dict[str, list[float]]:
    request = timeline_pb2.GetTimelineRequest(user_id="reader", page_size=page_size)
    samples: dict[str, list[float]] = {name: [] for name in stubs}
    names = list(stubs)
    for index in range(warmup + requests):
        # Rotate who goes first each round, so no variant always follows the same one.
        for name in names[index % len(names):] + names[:index % len(names)]:
            stub = stubs[name]
            started = time.perf_counter()
            reply = stub.GetTimeline(request, timeout=10)
            elapsed = (time.perf_counter() - started) * 1000
            if len(reply.entries) != page_size:
                raise RuntimeError(f"{name}: short page ({len(reply.entries)} entries)")
            if index >= warmup:
                samples[name].append(elapsed)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="measured calls per suite")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--authors", type=int, default=30)
    parser.add_argument("--posts-per-author", type=int, default=4)
    parser.add_argument("--page-size", type=int, default=20)
    parser.add_argument("--sampled-ratio", type=float, default=0.0,
                        help="also measure a suite sampling this fraction of traces")
    args = parser.parse_args()

    sink, server, port = start_sink()
    logs = tempfile.mkdtemp(prefix="trace-overhead-")
    exporting = {"OTEL_SDK_DISABLED": "false",
                 "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    disabled = {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": ""}
    variants = {"tracing exporting": exporting, "tracing disabled": disabled}
    if args.sampled_ratio:
        variants[f"sampled {args.sampled_ratio:g}"] = {
            **exporting, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": str(args.sampled_ratio)}
    try:
        with contextlib.ExitStack() as stack:
            stubs = {}
            for index, (name, env) in enumerate(variants.items()):
                suite = stack.enter_context(running_suite(THRESHOLD, 1, f"{logs}/{index}", env))
                stubs[name] = seed(suite, args.authors, args.posts_per_author)
            samples = measure(stubs, args.requests, args.warmup, args.page_size)
            time.sleep(6)  # one batch-export period, so the span count below is complete
    finally:
        server.stop(0)

    result: dict[str, dict[str, float]] = {}
    for name, values in samples.items():
        result[name] = {q: round(percentile(values, p), 3)
                        for q, p in (("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99))}
    on_p50 = result["tracing exporting"]["p50_ms"]
    off_p50 = result["tracing disabled"]["p50_ms"]
    print(f"GetTimeline, page of {args.page_size} ({args.authors} pushed authors + 1 pulled), "
          f"{args.requests} calls per suite after {args.warmup} warm-up, alternating")
    for name, figures in result.items():
        print(f"  {name:18} p50 {figures['p50_ms']:7.3f} ms   p90 {figures['p90_ms']:7.3f} ms   "
              f"p99 {figures['p99_ms']:7.3f} ms")
    print(f"  median overhead: {on_p50 - off_p50:+.3f} ms ({(on_p50 / off_p50 - 1) * 100:+.1f}%); "
          f"spans received by the OTLP receiver: {sink.spans}")
    print(json.dumps({"requests": args.requests, **result, "spans_exported": sink.spans}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
