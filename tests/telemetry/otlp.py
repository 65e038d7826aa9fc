"""A real OTLP/gRPC receiver (what Jaeger or a collector listens with on 4317), collecting
what the services export, flattened for assertions."""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def _attributes(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    links: list[tuple[str, str]]
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str

    def overlaps(self, other: ExportedSpan) -> bool:
        return max(self.start_ns, other.start_ns) < min(self.end_ns, other.end_ns)


SERVER, CLIENT, CONSUMER = SpanProto.SPAN_KIND_SERVER, SpanProto.SPAN_KIND_CLIENT, \
    SpanProto.SPAN_KIND_CONSUMER


@dataclass
class Collector:
    port: int = 0
    spans: list[ExportedSpan] = field(default_factory=list)
    metrics: dict[str, set[str]] = field(default_factory=dict)  # metric name -> services
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_traces(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        out: list[ExportedSpan] = []
        for resource_spans in request.resource_spans:
            service = str(_attributes(resource_spans.resource.attributes).get("service.name"))
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    out.append(ExportedSpan(
                        service=service,
                        name=span.name,
                        kind=span.kind,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                        status_code=span.status.code,
                        status_message=span.status.message,
                    ))
        with self._lock:
            self.spans += out

    def add_metrics(self, request: metrics_service_pb2.ExportMetricsServiceRequest) -> None:
        with self._lock:
            for resource_metrics in request.resource_metrics:
                service = str(_attributes(resource_metrics.resource.attributes).get("service.name"))
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        self.metrics.setdefault(metric.name, set()).add(service)

    def snapshot(self) -> list[ExportedSpan]:
        with self._lock:
            return list(self.spans)

    def trace(self, trace_id: str) -> list[ExportedSpan]:
        return [s for s in self.snapshot() if s.trace_id == trace_id]


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, collector: Collector) -> None:
        self._collector = collector

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest,
               context: grpc.ServicerContext) -> trace_service_pb2.ExportTraceServiceResponse:
        self._collector.add_traces(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, collector: Collector) -> None:
        self._collector = collector

    def Export(self, request: metrics_service_pb2.ExportMetricsServiceRequest,
               context: grpc.ServicerContext) -> metrics_service_pb2.ExportMetricsServiceResponse:
        self._collector.add_metrics(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


def start_receiver() -> tuple[Collector, grpc.Server]:
    received = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(received), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(received), server)
    received.port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return received, server
