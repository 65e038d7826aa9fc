"""The optional KEDA component, as rendered in prod with it switched on.

The variant passes every check the overlays get (conftest.VARIANTS); kubernetes-validate has no
schemas for KEDA's custom resources, so test_k8s_manifests.py skips them by name (CUSTOM_KINDS)
and this file checks them: known fields, the worker Deployment as target, one trigger per
fan-out partition stream with the workers' consumer group (names from the code's key layout and
the rendered settings, so they cannot drift), the store credentials from the Secret the roles
use, and exactly one autoscaler for the worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fanline.common.store.layout import QUEUE_GROUP, Layout

if TYPE_CHECKING:
    from conftest import Obj, Rendered

API = "keda.sh/v1alpha1"
# keda.sh/v1alpha1 fields (the CRDs' openAPIV3Schema), enough to catch a misspelt key.
SCALED_OBJECT_SPEC = {
    "advanced", "cooldownPeriod", "fallback", "idleReplicaCount", "initialCooldownPeriod",
    "maxReplicaCount", "minReplicaCount", "pollingInterval", "scaleTargetRef", "triggers",
}
TRIGGER = {"type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"}
STREAM_METADATA = {
    "address", "addresses", "host", "hosts", "port", "ports", "addressFromEnv", "hostFromEnv",
    "portFromEnv", "usernameFromEnv", "passwordFromEnv", "stream", "consumerGroup",
    "pendingEntriesCount", "streamLength", "lagCount", "activationLagCount", "enableTLS",
    "unsafeSsl", "databaseIndex",
}
# What decides the worker count: one of these per trigger.
BACKLOG = ("lagCount", "pendingEntriesCount", "streamLength")
AUTH_PARAMETERS = {
    "address", "addresses", "host", "hosts", "port", "ports", "username", "password", "tls",
    "ca", "cert", "key", "keyPassword", "unsafeSsl",
}
# FANLINE_REDIS_MODE -> the KEDA scaler that speaks that topology.
SCALER = {"single": "redis-streams", "cluster": "redis-cluster-streams"}


def scaled_object(rendered: Rendered) -> Obj:
    (found,) = rendered.of_kind("ScaledObject")
    return found


def stream_triggers(rendered: Rendered) -> list[Obj]:
    return [t for t in scaled_object(rendered)["spec"]["triggers"] if t["type"].startswith("redis")]


def autoscalers_of(rendered: Rendered, deployment: str) -> list[Obj]:
    return [
        o
        for o in rendered.objects
        if o["kind"] in {"HorizontalPodAutoscaler", "ScaledObject"}
        and o["spec"]["scaleTargetRef"]["name"] == deployment
    ]


def test_component_is_optional(prod: Rendered, dev: Rendered, dev_cluster: Rendered) -> None:
    for rendered in (prod, dev, dev_cluster):
        assert not [o for o in rendered.objects if o["apiVersion"].startswith("keda.sh/")]
        # Without it, base's CPU HPA scales the worker.
        (hpa,) = autoscalers_of(rendered, rendered.role_workload("worker")["metadata"]["name"])
        assert hpa["kind"] == "HorizontalPodAutoscaler", rendered.name


def test_only_known_custom_kinds_are_rendered(prod_keda: Rendered) -> None:
    custom = {(o["apiVersion"], o["kind"]) for o in prod_keda.objects if "keda.sh" in o["apiVersion"]}
    # Exactly what test_k8s_manifests.CUSTOM_KINDS skips, and this file checks.
    assert custom == {(API, "ScaledObject"), (API, "TriggerAuthentication")}


def test_scaled_object_uses_known_fields(prod_keda: Rendered) -> None:
    spec = scaled_object(prod_keda)["spec"]
    assert set(spec) <= SCALED_OBJECT_SPEC, set(spec) - SCALED_OBJECT_SPEC
    assert set(spec.get("advanced", {})) <= {"horizontalPodAutoscalerConfig", "restoreToOriginalReplicaCount",
                                            "scalingModifiers"}
    for trigger in spec["triggers"]:
        assert set(trigger) <= TRIGGER, trigger
        assert all(isinstance(v, str) for v in trigger["metadata"].values()), trigger
        if trigger["type"].startswith("redis"):
            assert set(trigger["metadata"]) <= STREAM_METADATA, set(trigger["metadata"]) - STREAM_METADATA
    names = [t["name"] for t in spec["triggers"] if "name" in t]
    assert len(names) == len(set(names))


def test_scaled_object_targets_the_worker_deployment(prod_keda: Rendered) -> None:
    worker = prod_keda.role_workload("worker")
    ref = scaled_object(prod_keda)["spec"]["scaleTargetRef"]
    assert ref.get("apiVersion", "apps/v1") == "apps/v1"
    assert ref.get("kind", "Deployment") == worker["kind"] == "Deployment"
    assert ref["name"] == worker["metadata"]["name"]


def test_worker_has_exactly_one_autoscaler(prod_keda: Rendered, prod: Rendered) -> None:
    worker = prod_keda.role_workload("worker")["metadata"]["name"]
    # KEDA makes its own HPA from the ScaledObject: base's must be gone.
    assert [a["kind"] for a in autoscalers_of(prod_keda, worker)] == ["ScaledObject"]
    # The other roles keep prod's HPAs unchanged.
    def others(rendered: Rendered) -> list[Obj]:
        return [h for h in rendered.of_kind("HorizontalPodAutoscaler")
                if h["spec"]["scaleTargetRef"]["name"] != worker]
    assert others(prod_keda) == others(prod) and others(prod)


def test_bounds_and_cpu_match_the_hpa_it_replaces(prod_keda: Rendered, prod: Rendered) -> None:
    worker = prod.role_workload("worker")["metadata"]["name"]
    (hpa,) = autoscalers_of(prod, worker)
    spec = scaled_object(prod_keda)["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (
        hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
    # Never idle at zero: workers also reclaim stopped workers' entries.
    assert spec["minReplicaCount"] >= 1 and "idleReplicaCount" not in spec
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == hpa["spec"]["behavior"]
    (cpu,) = [t for t in spec["triggers"] if t["type"] == "cpu"]
    (metric,) = hpa["spec"]["metrics"]
    assert cpu["metricType"] == metric["resource"]["target"]["type"] == "Utilization"
    assert int(cpu["metadata"]["value"]) == metric["resource"]["target"]["averageUtilization"]


def test_one_trigger_per_partition_stream_with_the_workers_group(prod_keda: Rendered) -> None:
    config = prod_keda.config
    layout = Layout(int(config["FANLINE_STORE_BUCKETS"]), int(config["FANLINE_QUEUE_PARTITIONS"]))
    expected = [layout.stream(p) for p in range(layout.partitions)]
    triggers = stream_triggers(prod_keda)
    assert [t["metadata"]["stream"] for t in triggers] == expected
    for trigger in triggers:
        meta = trigger["metadata"]
        assert trigger["type"] == SCALER[config["FANLINE_REDIS_MODE"]]
        assert meta["consumerGroup"] == QUEUE_GROUP
        (backlog,) = [k for k in BACKLOG if k in meta]
        assert backlog != "streamLength", "the stream keeps delivered entries: scale on the group"
        assert int(meta[backlog]) > 0
        assert int(meta.get("databaseIndex", "0")) == 0  # prod's URL: /0


def test_store_credentials_come_from_the_roles_secret(prod_keda: Rendered) -> None:
    worker = prod_keda.role_workload("worker")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    (url,) = [e for e in container["env"] if e["name"] == "FANLINE_REDIS_URL"]
    secret = url["valueFrom"]["secretKeyRef"]["name"]
    for trigger in stream_triggers(prod_keda):
        ref = trigger["authenticationRef"]
        assert ref.get("kind", "TriggerAuthentication") == "TriggerAuthentication"
        auth = prod_keda.get("TriggerAuthentication", ref["name"])
        assert set(auth["spec"]) == {"secretTargetRef"}
        refs = auth["spec"]["secretTargetRef"]
        assert {r["parameter"] for r in refs} <= AUTH_PARAMETERS
        parameters = {r["parameter"] for r in refs}
        # One server's host:port, or a cluster's seed list (redis-cluster-streams).
        where = "addresses" if trigger["type"] == SCALER["cluster"] else "address"
        assert {"password", where} <= parameters, parameters
        # The same Secret the roles read the store URL from (created outside git), and no
        # address or password in the trigger itself.
        assert {r["name"] for r in refs} == {secret}
        assert not {"address", "addresses", "host", "hosts"} & set(trigger["metadata"])
        # prod's store URL is rediss://: KEDA must speak TLS too.
        assert trigger["metadata"].get("enableTLS") == "true"
    assert not [s for s in prod_keda.of_kind("Secret") if s["metadata"]["name"] == secret]
