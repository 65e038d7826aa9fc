"""The one place that sets up telemetry (traces and metrics from the standard OTEL_* env)."""

from __future__ import annotations

import grpc


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    return []


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    return []


def setup(service_name: str, settings: object | None = None) -> None:
    """Configure tracing/metrics for this process. No-op until an exporter is configured."""
    del service_name, settings


def shutdown() -> None:
    """Flush and stop exporters."""


def inject_context() -> dict[str, str]:
    """W3C trace context of the current span, to carry across the fan-out queue."""
    return {}


def current_trace_id() -> str:
    return ""
