"""The one place that sets up telemetry (traces and metrics from the standard OTEL_* env).

`setup()` reads OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]ENDPOINT,
OTEL_TRACES_SAMPLER[_ARG], OTEL_METRIC_EXPORT_INTERVAL, OTEL_SDK_DISABLED, ... and exports over
OTLP/gRPC. Without an endpoint nothing is exported and tracing is off: no exporter (so no
connection errors in the logs), no interceptors, and `span()` is a shared no-op.

Everything here also works when `setup()` was never called (unit tests): spans are no-ops, the
context helpers return empty values. Tests that want real spans call `configure()` with their
own providers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.sampling import (
    Decision,
    Sampler,
    SamplingResult,
    _get_from_env_or_default,
)
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from fanline.common import metrics
from fanline.common.interceptor import Unary, UnaryServerInterceptor

log = logging.getLogger(__name__)
T = TypeVar("T")

TRACER_NAME = "fanline"
# Probes and tooling: a span per kubelet probe would bury the real requests.
UNTRACED_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")
REDIS_SCOPE = "opentelemetry.instrumentation.redis"
SPAN_NAME_MAX = 80
STATEMENT_MAX_ARGS = 8
STATEMENT_MAX_CHARS = 200
# Backstop for the statement of a big pipeline (the instrumentation joins every command).
SPAN_ATTRIBUTE_MAX_CHARS = 1024
_STATEMENT_KEYS = ("db.statement", "db.query.text")
_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_NO_SPAN: contextlib.nullcontext[Span] = contextlib.nullcontext(trace.INVALID_SPAN)


class _State:
    tracer: trace.Tracer | None = None  # None: tracing is off
    tracer_provider: TracerProvider | None = None
    meter_provider: Any = None
    prometheus: Any = None
    redis_instrumented: bool = False


_state = _State()


# -- set-up ---------------------------------------------------------------------------------


def _endpoint(signal: str) -> str:
    value = (os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
             or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip()
    # "host:4317" would otherwise be taken for a TLS target; collectors next to us are plain.
    return value if not value or "://" in value else f"http://{value}"


def _exporters(signal: str) -> set[str]:
    """OTEL_{signal}_EXPORTER as the SDK reads it: a comma-separated list, "otlp" by default;
    "none" turns the signal's export off."""
    names = {n.strip().lower() for n in
             os.environ.get(f"OTEL_{signal}_EXPORTER", "otlp").split(",") if n.strip()}
    return set() if "none" in names else names


def _resource(service_name: str) -> Resource:
    return Resource.create({
        "service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name,
        "service.namespace": "fanline",
        "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
    })


def _span_limits() -> SpanLimits:
    if os.environ.get("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT") or os.environ.get(
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"
    ):
        return SpanLimits()
    return SpanLimits(max_span_attribute_length=SPAN_ATTRIBUTE_MAX_CHARS)


def setup(service_name: str, settings: object | None = None) -> None:
    """Configure tracing/metrics for this process. No-op until an exporter is configured."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    resource = _resource(service_name)
    tracer_provider: TracerProvider | None = None
    traces_endpoint = _endpoint("TRACES")
    span_exporters: list[Any] = []
    trace_exporters = _exporters("TRACES")
    if traces_endpoint and "otlp" in trace_exporters:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        span_exporters.append(OTLPSpanExporter(endpoint=traces_endpoint))
    if "console" in trace_exporters:  # spans as JSON on stdout: no collector needed
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        span_exporters.append(ConsoleSpanExporter())
    if span_exporters:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        tracer_provider = TracerProvider(
            resource=resource,
            sampler=RequestSampler(_get_from_env_or_default()),
            span_limits=_span_limits(),
        )
        tracer_provider.add_span_processor(RedisSpanNames())
        for exporter in span_exporters:
            tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(tracer_provider)
        _instrument_redis(tracer_provider)

    readers: list[Any] = []
    metrics_endpoint = _endpoint("METRICS")
    if metrics_endpoint and "otlp" in _exporters("METRICS"):
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        # The interval comes from OTEL_METRIC_EXPORT_INTERVAL (default 60 s).
        readers.append(PeriodicExportingMetricReader(_metric_exporter(metrics_endpoint)))
    port = int(getattr(settings, "metrics_port", 0) or 0)
    if port > 0:
        readers.append(_start_prometheus(port, str(getattr(settings, "bind_host", "") or "")))
    meter_provider = None
    if readers:
        from opentelemetry import metrics as otel_metrics
        from opentelemetry.sdk.metrics import MeterProvider

        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        otel_metrics.set_meter_provider(meter_provider)
    configure(tracer_provider, meter_provider)
    if tracer_provider or meter_provider:
        log.info("telemetry: traces -> %s, metrics -> %s",
                 ", ".join(filter(None, [traces_endpoint if "otlp" in trace_exporters else "",
                                         "stdout" if "console" in trace_exporters else ""]))
                 or "off",
                 ", ".join(filter(None, [metrics_endpoint, f":{port}/metrics" if port else ""]))
                 or "off")


def _metric_exporter(endpoint: str) -> Any:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.sdk.metrics.export import MetricExportResult

    class TracesOnlyAware(OTLPMetricExporter):
        """Jaeger's OTLP port takes traces only. The first export asks with an empty request;
        on UNIMPLEMENTED metrics export stops with one log line, instead of an error logged
        every interval for as long as the process runs."""

        _probed = False
        _unsupported = False

        def export(self, metrics_data: Any, timeout_millis: float = 10_000,
                   **kwargs: Any) -> MetricExportResult:
            if not self._probed:
                self._probed = True
                client = getattr(self, "_client", None)
                try:
                    if client is not None:
                        client.Export(ExportMetricsServiceRequest(), timeout=5,
                                      metadata=getattr(self, "_headers", None) or ())
                except grpc.RpcError as exc:
                    if exc.code() is grpc.StatusCode.UNIMPLEMENTED:  # type: ignore[attr-defined]
                        self._unsupported = True
                        log.info("%s accepts no OTLP metrics (Jaeger?): metrics export off", endpoint)
            if self._unsupported:
                return MetricExportResult.SUCCESS
            return super().export(metrics_data, timeout_millis, **kwargs)

    return TracesOnlyAware(endpoint=endpoint)


def _start_prometheus(port: int, host: str) -> Any:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import start_http_server

    reader = PrometheusMetricReader()
    try:
        # FANLINE_BIND_HOST, like the gRPC listeners: loopback unless told otherwise.
        _state.prometheus = start_http_server(port, addr=host or "127.0.0.1")
    except OSError as exc:  # e.g. several processes of `fanline up` given one port
        log.warning("Prometheus endpoint not started on port %d: %s", port, exc)
    return reader


def _instrument_redis(tracer_provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor().instrument(
        tracer_provider=tracer_provider, request_hook=redis_request_hook,
        response_hook=redis_response_hook,
    )
    _state.redis_instrumented = True


def configure(tracer_provider: TracerProvider | None = None, meter_provider: Any = None) -> None:
    """Use these providers (None = off). `setup()` calls it; tests call it directly."""
    _state.tracer_provider = tracer_provider
    _state.tracer = tracer_provider.get_tracer(TRACER_NAME) if tracer_provider else None
    _state.meter_provider = meter_provider
    metrics.install(meter_provider)


def tracing_enabled() -> bool:
    return _state.tracer is not None


def shutdown() -> None:
    """Flush and stop exporters."""
    if _state.redis_instrumented:
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        RedisInstrumentor().uninstrument()
        _state.redis_instrumented = False
    for provider in (_state.tracer_provider, _state.meter_provider):
        if provider is not None:
            try:
                provider.shutdown()
            except Exception:  # never let telemetry turn a clean exit into a crash
                log.exception("telemetry shutdown failed")
    if _state.prometheus is not None:
        server, _thread = _state.prometheus
        server.shutdown()
        _state.prometheus = None
    configure(None, None)


# -- spans ----------------------------------------------------------------------------------


def span(name: str, attributes: Attributes = None,
         kind: SpanKind = SpanKind.INTERNAL) -> contextlib.AbstractContextManager[Span]:
    """A child of the current span; a free no-op when tracing is off."""
    if _state.tracer is None:
        return _NO_SPAN
    return _state.tracer.start_as_current_span(name, kind=kind, attributes=attributes)


async def traced(name: str, attributes: Attributes, call: Callable[..., Awaitable[T]],
                 *args: Any) -> T:
    """`await call(*args)` inside a span. Run as tasks, several sources get sibling spans that
    overlap in time, as their reads do. (A callable, not a coroutine: a task cancelled before
    it starts must not leave a never-awaited coroutine behind.)"""
    with span(name, attributes) as current:
        result = await call(*args)
        if isinstance(result, list):
            current.set_attribute("fanline.result.size", len(result))
        return result


def consumer_span(name: str, carrier: Mapping[str, str],
                  attributes: Attributes = None) -> contextlib.AbstractContextManager[Span]:
    """A new trace for work taken from a queue, linked to the producer's span in `carrier`.

    A root plus a link (not a child): one post's fan-out is many batches spread over time and
    workers, each its own trace, all reachable from the publishing request."""
    if _state.tracer is None:
        return _NO_SPAN
    producer = trace.get_current_span(propagate.extract(carrier)).get_span_context()
    links = [Link(producer, {"fanline.link": "publisher"})] if producer.is_valid else []
    return _state.tracer.start_as_current_span(
        name, context=Context(), kind=SpanKind.CONSUMER, attributes=attributes, links=links
    )


def linked_span(name: str, carrier: Mapping[str, str],
                attributes: Attributes = None) -> contextlib.AbstractContextManager[Span]:
    """A new trace for one step of long-lived work (a stream's send), linked to the span in
    `carrier` (the request that caused it) and to the current span (the long-lived call)."""
    if _state.tracer is None:
        return _NO_SPAN
    links = []
    cause = trace.get_current_span(propagate.extract(carrier)).get_span_context()
    if cause.is_valid:
        links.append(Link(cause, {"fanline.link": "post"}))
    call = trace.get_current_span().get_span_context()
    if call.is_valid:
        links.append(Link(call, {"fanline.link": "stream"}))
    return _state.tracer.start_as_current_span(
        name, context=Context(), kind=SpanKind.PRODUCER, attributes=attributes, links=links)


def current_span() -> Span:
    return trace.get_current_span()


def inject_context() -> dict[str, str]:
    """W3C trace context of the current span, to carry across the fan-out queue."""
    carrier: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        propagate.inject(carrier)
    return carrier


def extract_span_context(carrier: Mapping[str, str]) -> trace.SpanContext:
    """The span context `inject_context()` stored in `carrier` (invalid if none)."""
    return trace.get_current_span(propagate.extract(carrier)).get_span_context()


def current_trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else ""


class RequestSampler(Sampler):
    """The configured sampler, plus two rules for traces that make sense as stories.

    - A Redis call outside any traced operation (a worker's blocking XREADGROUP, the outbox
      drainer's poll, queue-stats refreshes) would be a one-span trace every few hundred ms:
      such root CLIENT spans are dropped. Root gRPC client calls (rpc.system set) are kept.
    - A root span with links (a fan-out batch) follows the decision made for the publisher it
      links to, so a sampled post has its whole delivery traced.
    """

    def __init__(self, inner: Sampler) -> None:
        self._inner = inner

    def should_sample(
        self, parent_context: Context | None, trace_id: int, name: str,
        kind: SpanKind | None = None, attributes: Attributes = None,
        links: Sequence[Link] | None = None, trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid:
            if kind is SpanKind.CLIENT and not (attributes and "rpc.system" in attributes):
                return SamplingResult(Decision.DROP)
            linked = [link.context for link in links or () if link.context.is_valid]
            if linked:
                sampled = any(c.trace_flags.sampled for c in linked)
                return SamplingResult(
                    Decision.RECORD_AND_SAMPLE if sampled else Decision.DROP, attributes
                )
        return self._inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"RequestSampler{{{self._inner.get_description()}}}"


# -- Redis ----------------------------------------------------------------------------------


def compact_command_names(name: str, limit: int = SPAN_NAME_MAX) -> str:
    """'ZREVRANGEBYSCORE ZREVRANGEBYSCORE ... (x2000)' -> "ZREVRANGEBYSCORE(x2000)", capped."""
    runs: list[list[Any]] = []
    for word in name.split():
        if runs and runs[-1][0] == word:
            runs[-1][1] += 1
        else:
            runs.append([word, 1])
    parts = [word if count == 1 else f"{word}(x{count})" for word, count in runs]
    out = " ".join(parts)
    if len(out) <= limit:
        return out
    kept: list[str] = []
    for index, part in enumerate(parts):
        suffix = f" …+{len(parts) - index} more"
        if len(" ".join([*kept, part])) + len(suffix) > limit:
            return " ".join(kept) + suffix
        kept.append(part)
    return out


class RedisSpanNames(SpanProcessor):
    """The Redis instrumentation names a pipeline span after every queued command joined by
    spaces: a 2,000-author archive read would be a 34,000-character name. Compact it."""

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        scope = span.instrumentation_scope
        if scope is not None and scope.name == REDIS_SCOPE and " " in span.name:
            compact = compact_command_names(span.name)
            if compact != span.name:
                span.update_name(compact)

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def redis_request_hook(span: Span, instance: object, args: Sequence[Any],
                       kwargs: Mapping[str, Any]) -> None:
    """A fan-out batch is one EVALSHA with 3,000 KEYS: say how many instead of '? ? ? ...'."""
    if not span.is_recording() or not args:
        return
    _name_the_system(span)
    command = str(args[0]).upper()
    statement: str | None = None
    if command in ("EVALSHA", "EVAL") and len(args) >= 3:
        numkeys = int(args[2])
        span.set_attribute("db.redis.keys_count", numkeys)
        statement = f"{command} ? {numkeys} (+{len(args) - 3} keys and args)"
    elif len(args) > STATEMENT_MAX_ARGS + 1:
        statement = f"{command} {' '.join('?' * STATEMENT_MAX_ARGS)} … ({len(args) - 1} args)"
    if statement is not None:
        recorded = getattr(span, "attributes", None) or {}
        for key in _STATEMENT_KEYS:
            if key in recorded:
                span.set_attribute(key, statement)


def _name_the_system(span: Span) -> None:
    """The instrumentation names the database on single-node spans only; name it on cluster
    spans too, so store calls look the same in both modes."""
    recorded = getattr(span, "attributes", None) or {}
    if "db.system" not in recorded and "db.system.name" not in recorded:
        span.set_attribute("db.system", "redis")


def compact_statement(statement: str) -> str:
    """A pipeline's statement is one "COMMAND ? ? ..." line per command, each up to 1,000
    characters (a fan-out batch's script calls): keep long commands as their argument count,
    and repeated lines once with a count."""
    lines: list[list[Any]] = []
    for line in statement.split("\n"):
        command, _, rest = line.partition(" ")
        args = rest.count("?")
        more = "+" if rest.endswith("...") else ""  # the instrumentation cut the line short
        text = line if args <= STATEMENT_MAX_ARGS else f"{command} ({args}{more} args)"
        if lines and lines[-1][0] == text:
            lines[-1][1] += 1
        else:
            lines.append([text, 1])
    return "\n".join(text if count == 1 else f"{text} (x{count})" for text, count in lines)


def redis_response_hook(span: Span, instance: object, response: object) -> None:
    """Pipelines get no request hook: compact their statement once they have run."""
    if not span.is_recording():
        return
    _name_the_system(span)
    recorded = getattr(span, "attributes", None) or {}
    for key in _STATEMENT_KEYS:
        value = recorded.get(key)
        if isinstance(value, str) and ("\n" in value or len(value) > STATEMENT_MAX_CHARS):
            span.set_attribute(key, compact_statement(value))


# -- gRPC -----------------------------------------------------------------------------------


def _traced_method(method: str) -> bool:
    return not method.lstrip("/").startswith(UNTRACED_SERVICES)


def _rpc_attributes(method: str) -> tuple[str, dict[str, Any]]:
    service, _, name = method.lstrip("/").partition("/")
    return f"{service}/{name}", {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def record_rpc_status(span: Span, code: grpc.StatusCode | None, details: str | None,
                      trailing_metadata: Sequence[tuple[str, Any]] | None = None) -> None:
    """Status code as attribute; any non-OK code makes the span an error (including
    INVALID_ARGUMENT: Jaeger's error filter should find rejected requests too), with the
    field violations of google.rpc rich details when present."""
    code = code or grpc.StatusCode.OK
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is grpc.StatusCode.OK:
        return
    span.set_status(Status(StatusCode.ERROR, f"{code.name}: {details or ''}".rstrip(": ")))
    for key, value in trailing_metadata or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            violations = _field_violations(value)
            if violations:
                span.set_attribute("rpc.grpc.field_violations", violations)


def _field_violations(raw: bytes) -> list[str]:
    try:
        status = status_pb2.Status.FromString(raw)
    except Exception:
        return []
    out: list[str] = []
    for detail in status.details:
        request = error_details_pb2.BadRequest()
        if detail.Unpack(request):
            out += [f"{v.field}: {v.description}" for v in request.field_violations]
    return out


class _ServerTracing(UnaryServerInterceptor):
    """SERVER span per call, child of the caller's propagated context. It must be the first
    interceptor, so the status set by ErrorMappingInterceptor (abort with rich details) is
    visible on the context when the call returns."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def applies_to(self, method: str) -> bool:
        return _traced_method(method)

    def wrap(self, method: str, inner: Unary) -> Unary:
        name, attributes = _rpc_attributes(method)
        tracer = self._tracer

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            carrier = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
            with tracer.start_as_current_span(
                name, context=propagate.extract(carrier), kind=SpanKind.SERVER,
                attributes=attributes, record_exception=False, set_status_on_exception=False,
            ) as current:
                try:
                    response = await inner(request, context)
                except grpc.aio.AbortError:
                    record_rpc_status(current, context.code(), context.details(),
                                      context.trailing_metadata())
                    raise
                except asyncio.CancelledError:
                    record_rpc_status(current, grpc.StatusCode.CANCELLED, "cancelled")
                    raise
                except Exception as exc:  # a bug: gRPC answers UNKNOWN
                    current.record_exception(exc)
                    record_rpc_status(current, grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}")
                    raise
                record_rpc_status(current, context.code(), context.details(),
                                  context.trailing_metadata())
                return response

        return unary


class _ClientTracing(grpc.aio.UnaryUnaryClientInterceptor):
    """CLIENT span per call; injects W3C trace context into the call's metadata."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    async def intercept_unary_unary(
        self, continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails, request: Any,
    ) -> Any:
        raw = client_call_details.method
        method = raw.decode() if isinstance(raw, bytes) else raw
        if not _traced_method(method):
            return await continuation(client_call_details, request)
        name, attributes = _rpc_attributes(method)
        with self._tracer.start_as_current_span(
            name, kind=SpanKind.CLIENT, attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        ) as current:
            metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()))
            propagate.inject(metadata)
            call = await continuation(client_call_details._replace(metadata=metadata), request)
            try:
                code = await call.code()
                details = await call.details()
                trailing = await call.trailing_metadata()
            except asyncio.CancelledError:
                record_rpc_status(current, grpc.StatusCode.CANCELLED, "cancelled")
                raise
            record_rpc_status(current, code, details, tuple(trailing or ()))
            return call


def _code_value(code: grpc.StatusCode | None) -> int:
    return int((code or grpc.StatusCode.OK).value[0])


class _ServerMetrics(UnaryServerInterceptor):
    """rpc.server.duration per call, with the status the call ended with (as set by the
    error mapping and access interceptors inside it)."""

    def applies_to(self, method: str) -> bool:
        return _traced_method(method)

    def wrap(self, method: str, inner: Unary) -> Unary:
        _, attributes = _rpc_attributes(method)

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code: grpc.StatusCode | None = grpc.StatusCode.UNKNOWN  # a bug escaping the servicer
            try:
                response = await inner(request, context)
                code = context.code()
                return response
            except grpc.aio.AbortError:
                code = context.code()
                raise
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                metrics.rpc_finished("server", attributes, _code_value(code),
                                     (time.perf_counter() - started) * 1000)

        return unary


class _ClientMetrics(grpc.aio.UnaryUnaryClientInterceptor):
    """rpc.client.duration per call one service makes to another."""

    async def intercept_unary_unary(
        self, continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails, request: Any,
    ) -> Any:
        raw = client_call_details.method
        method = raw.decode() if isinstance(raw, bytes) else raw
        _, attributes = _rpc_attributes(method)
        started = time.perf_counter()
        code = grpc.StatusCode.CANCELLED
        try:
            call = await continuation(client_call_details, request)
            code = await call.code()
            return call
        finally:
            metrics.rpc_finished("client", attributes, _code_value(code),
                                 (time.perf_counter() - started) * 1000)


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """Put first in the server's list. Empty while tracing and metrics are off (no per-call
    cost)."""
    out: list[grpc.aio.ServerInterceptor] = []
    if _state.tracer is not None:
        out.append(_ServerTracing(_state.tracer))
    if metrics.enabled():
        out.append(_ServerMetrics())
    return out


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    out: list[grpc.aio.ClientInterceptor] = []
    if _state.tracer is not None:
        out.append(_ClientTracing(_state.tracer))
    if metrics.enabled():
        out.append(_ClientMetrics())
    return out

