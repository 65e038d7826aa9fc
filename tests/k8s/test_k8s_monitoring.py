"""The optional monitoring component, as rendered in prod with it switched on.

The ServiceMonitor must scrape the metrics port of each of the four roles' Services; the Grafana
dashboard (JSON in a ConfigMap) may only query metrics the processes export. Those names are not
listed here: they come from running services/common/metrics.py's instruments through the same
OpenTelemetry Prometheus exporter the processes serve (plus prometheus_client's process
collector, which the default registry that `start_http_server` serves carries), so a renamed
instrument or a new unit breaks this test instead of a dashboard panel.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from fanline.common import metrics

if TYPE_CHECKING:
    from conftest import Obj, Rendered

API = "monitoring.coreos.com/v1"
DASHBOARD = "fanline-dashboard"
# PromQL words that are neither metric names nor functions (functions are followed by "(").
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan"}
AGGREGATION_GROUPS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# Panels the brief asks for: the metric (family) each group needs at least once.
REQUIRED = {
    "request rate": "rpc_server_duration_milliseconds_count",
    "request latency": "rpc_server_duration_milliseconds_bucket",
    "queue depth": "fanline_queue_depth",
    "queue pending": "fanline_queue_pending",
    "fan-out lag": "fanline_fanout_lag_milliseconds_bucket",
    "inbox writes": "fanline_inbox_writes_total",
    "process RSS": "process_resident_memory_bytes",
}


class _RecordingMeter:
    """A real SDK meter that records one value into every instrument metrics.py creates (and
    gives observable ones a constant callback), so each shows up in the exposition."""

    def __init__(self, meter: Any) -> None:
        self._meter = meter

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._meter, name)
        if not name.startswith("create_"):
            return attribute

        def create(instrument_name: str, *args: Any, **kwargs: Any) -> Any:
            from opentelemetry.metrics import Observation

            if name.startswith("create_observable_"):
                # metrics.py passes the callbacks first; replace them with a constant one.
                rest = args[1:] if args else ()
                assert args or kwargs.pop("callbacks", None), f"{instrument_name} has no callback"
                return attribute(instrument_name, [lambda _options: [Observation(1)]], *rest, **kwargs)
            instrument = attribute(instrument_name, *args, **kwargs)
            for method in ("add", "record", "set"):
                if hasattr(instrument, method):
                    getattr(instrument, method)(1)
                    break
            else:
                raise AssertionError(f"cannot record into {instrument_name}")
            return instrument

        return create


class _RecordingProvider:
    def __init__(self, provider: Any) -> None:
        self._provider = provider

    def get_meter(self, *args: Any, **kwargs: Any) -> _RecordingMeter:
        return _RecordingMeter(self._provider.get_meter(*args, **kwargs))


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Every sample name a Fanline process's /metrics can carry."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import REGISTRY, CollectorRegistry, ProcessCollector, generate_latest

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    reader = PrometheusMetricReader(registry=registry)
    provider = MeterProvider(metric_readers=[reader])
    try:
        metrics.install(_RecordingProvider(provider))
        text = generate_latest(registry).decode()
    finally:
        metrics.install(None)
        provider.shutdown()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"}
    # The processes serve the default registry (telemetry._start_prometheus), which carries the
    # process collector on Linux: its names are real there.
    process = {n for n in names if n.startswith("process_")}
    assert "process_resident_memory_bytes" in process
    assert process <= {line.split("{")[0].split(" ")[0]
                       for line in generate_latest(REGISTRY).decode().splitlines()
                       if line and line[0] != "#"}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges, subqueries
    text = AGGREGATION_GROUPS.sub("", text)
    found = set()
    for match in re.finditer(r"(?<![\w$.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = match[1], match[2]
        if call or word.lower() in KEYWORDS:
            continue
        found.add(word)
    return found


def dashboard(rendered: Rendered) -> Obj:
    config_map = rendered.get("ConfigMap", DASHBOARD)
    ((key, text),) = config_map["data"].items()
    assert key.endswith(".json")
    return dict(json.loads(text))


def expressions(board: Obj) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    def panels(items: list[Obj]) -> Iterator[Obj]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(board["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target.get('refId')}", target["expr"]
    for variable in board.get("templating", {}).get("list", []):
        if variable["type"] == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            inner = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            yield f"variable {variable['name']}", inner[1] if inner else query


def test_exported_names_follow_the_instruments(exported: set[str]) -> None:
    # The derivation above is the exporter's: fanline.queue.depth -> fanline_queue_depth, a
    # counter gains _total, a histogram in ms gains _milliseconds_bucket/_sum/_count.
    assert {"fanline_queue_depth", "fanline_inbox_writes_total",
            "rpc_server_duration_milliseconds_bucket"} <= exported


def test_component_is_optional(prod: Rendered, dev: Rendered, dev_cluster: Rendered) -> None:
    for rendered in (prod, dev, dev_cluster):
        assert not [o for o in rendered.objects if o["apiVersion"].startswith("monitoring.coreos.com/")]
        assert not [c for c in rendered.of_kind("ConfigMap") if c["metadata"]["name"] == DASHBOARD]


def test_only_known_custom_kinds_are_rendered(prod_monitoring: Rendered) -> None:
    custom = {(o["apiVersion"], o["kind"]) for o in prod_monitoring.objects if "coreos" in o["apiVersion"]}
    # Exactly what test_k8s_manifests.CUSTOM_KINDS skips, and this file checks.
    assert custom == {(API, "ServiceMonitor")}


def test_service_monitor_scrapes_every_roles_metrics_port(prod_monitoring: Rendered) -> None:
    (monitor,) = prod_monitoring.of_kind("ServiceMonitor")
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels",
                         "podTargetLabels", "sampleLimit"}
    # Its own namespace only (none given), and the Services it selects are exactly the roles'.
    assert "namespaceSelector" not in spec
    selector = spec["selector"]["matchLabels"]
    selected = [s for s in prod_monitoring.of_kind("Service")
                if selector.items() <= s["metadata"].get("labels", {}).items()]
    roles = {role: w for w, _, role in prod_monitoring.fanline_containers()}
    assert len(roles) == 4
    by_service = {s["metadata"]["name"]: s for s in selected}
    for role, workload in roles.items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        (service,) = [s for s in by_service.values() if s["spec"]["selector"].items() <= labels.items()]
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        for endpoint in spec["endpoints"]:
            assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout",
                                     "relabelings", "metricRelabelings", "honorLabels"}
            assert endpoint["port"] in ports, f"{role}: Service has no port {endpoint['port']}"
            assert endpoint.get("scheme", "http") == "http"  # prometheus_client serves plain HTTP
            assert endpoint.get("path", "/metrics") == "/metrics"
            assert ports[endpoint["port"]]["port"] == int(prod_monitoring.config["FANLINE_METRICS_PORT"])
    assert len(by_service) == 4, sorted(by_service)


def test_dashboard_is_a_grafana_sidecar_configmap(prod_monitoring: Rendered) -> None:
    config_map = prod_monitoring.get("ConfigMap", DASHBOARD)
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = dashboard(prod_monitoring)
    assert board["uid"] and board["title"] and board["panels"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_queries_only_exported_metrics(prod_monitoring: Rendered, exported: set[str]) -> None:
    used: set[str] = set()
    for where, expr in expressions(dashboard(prod_monitoring)):
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        assert names <= exported, f"{where}: {sorted(names - exported)} not exported"
        used |= names
    missing = {panel: name for panel, name in REQUIRED.items() if name not in used}
    assert not missing, missing


def test_queue_values_are_aggregated_with_max(prod_monitoring: Rendered) -> None:
    # Every worker reports the same queue-wide values (metrics.py): summing would multiply them.
    for where, expr in expressions(dashboard(prod_monitoring)):
        if re.search(r"fanline_queue_\w+", expr):
            assert re.match(r"\s*max\b", expr), f"{where}: {expr}"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (job) (rate(a_total{x="y{z}", w=~"$v"}[$__rate_interval]))', {"a_total"}),
        ("histogram_quantile(0.99, sum by (le) (rate(b_bucket[5m])))", {"b_bucket"}),
        ("max(c) / on (pod) group_left d offset 5m", {"c", "d"}),
        ("1 - sum(rate(e_total[1m])) > bool 0", {"e_total"}),
    ],
)
def test_metric_names_parses_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
