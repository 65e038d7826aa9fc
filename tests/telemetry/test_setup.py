"""`telemetry.setup()` from the environment, in a fresh interpreter (it sets process-wide
providers and instruments the Redis client globally)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from fanline.common.embedded import free_port

SCRIPT = """
import json, logging, sys, time, urllib.request
from fanline.common import metrics, telemetry
from fanline.common.config import load_settings

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
telemetry.setup("fanline-test", load_settings())
metrics.post_published("push")
time.sleep(float(sys.argv[2]))
out = {
    "tracing": telemetry.tracing_enabled(),
    "server_interceptors": len(telemetry.server_interceptors()),
    "client_interceptors": len(telemetry.client_interceptors()),
    "metrics": metrics.enabled(),
}
port = int(sys.argv[1])
if port:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        out["scrape"] = reply.read().decode()
telemetry.shutdown()
print(json.dumps(out))
"""


def run(port: int, wait_s: float = 0.0, **env: str) -> tuple[dict[str, object], str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FANLINE_"))}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(port), str(wait_s)], env={**clean, **env},
        capture_output=True, text=True, timeout=60, check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_no_endpoint_means_no_tracing_and_no_errors() -> None:
    result, stderr = run(0)
    assert result == {"tracing": False, "server_interceptors": 0, "client_interceptors": 0,
                      "metrics": False}
    assert "WARNING" not in stderr and "ERROR" not in stderr


def test_prometheus_endpoint_serves_the_metrics() -> None:
    port = free_port()
    result, stderr = run(port, FANLINE_METRICS_PORT=str(port))
    assert result["metrics"] is True and result["tracing"] is False
    assert 'fanline_posts_published_total{fanline_delivery_mode="push"' in str(result["scrape"])
    assert "WARNING" not in stderr and "ERROR" not in stderr


def test_endpoint_turns_tracing_on() -> None:
    # Nothing listens there: shutdown's flush fails quietly within the short timeout.
    result, _stderr = run(0, OTEL_EXPORTER_OTLP_ENDPOINT=f"127.0.0.1:{free_port()}",
                          OTEL_EXPORTER_OTLP_TIMEOUT="1", OTEL_METRICS_EXPORTER="none")
    assert result == {"tracing": True, "server_interceptors": 1, "client_interceptors": 1,
                      "metrics": False}


class _TracesOnly(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest,
               context: grpc.ServicerContext) -> trace_service_pb2.ExportTraceServiceResponse:
        return trace_service_pb2.ExportTraceServiceResponse()


def test_a_traces_only_endpoint_turns_metrics_export_off_quietly() -> None:
    """Like Jaeger all-in-one: OTLP on 4317 for traces, UNIMPLEMENTED for metrics."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TracesOnly(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        result, stderr = run(0, 1.5, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
                             OTEL_METRIC_EXPORT_INTERVAL="200")
    finally:
        server.stop(0)
    assert result["tracing"] is True and result["metrics"] is True
    assert "accepts no OTLP metrics" in stderr
    assert "ERROR" not in stderr and "WARNING" not in stderr, stderr


def test_the_console_exporter_prints_spans_without_a_collector() -> None:
    script = ("from fanline.common import telemetry\n"
              "telemetry.setup('fanline-test')\n"
              "with telemetry.span('console-check'):\n"
              "    pass\n"
              "telemetry.shutdown()\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FANLINE_"))}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**clean, "OTEL_TRACES_EXPORTER": "console",
                               "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"},
                          timeout=60, check=True)
    spans = json.loads("[" + done.stdout.replace("}\n{", "},\n{") + "]")
    (only,) = [s for s in spans if s["name"] == "console-check"]
    assert only["resource"]["attributes"]["service.name"] == "fanline-test"
    assert only["resource"]["attributes"]["deployment.environment"] == "test"  # honoured too
