"""Offline checks of the rendered Kubernetes manifests: schema validity and deployment policy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kubernetes_validate
import pytest

from services.common.config import env_names, load_settings

if TYPE_CHECKING:
    from conftest import Obj, Rendered

ROOT = Path(__file__).resolve().parents[2]
# The kubectl on CI machines, and the newest release the schema package knows.
KUBERNETES_VERSIONS = ("1.32", kubernetes_validate.latest_version())
ROLES = {"post", "fanout", "worker", "timeline"}
# CLI role -> the Settings attribute holding the address it serves.
ROLE_ADDR = {
    "post": "post_addr",
    "fanout": "fanout_addr",
    "worker": "worker_addr",
    "timeline": "timeline_addr",
}
HPA_ROLES = {"post", "timeline", "worker"}
REQUIRED_OTEL = {
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_METRIC_EXPORT_INTERVAL",
}
# Stand-ins for values that only exist in a cluster's Secrets.
SECRET_SAMPLES = {
    "FANLINE_REDIS_URL": "rediss://:password@redis.example.internal:6379/0",
    "FANLINE_PAGE_TOKEN_SECRET": "0123456789abcdef0123456789abcdef",
}


def name_of(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """matchLabels only: that is all these manifests use for workload selectors."""
    assert set(selector) <= {"matchLabels"}, f"unsupported selector {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def pod_labels(workload: Obj) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def effective_env(rendered: Rendered, container: Obj) -> dict[str, str]:
    """The environment a container starts with: ConfigMap via envFrom, then explicit env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        env.update(rendered.get("ConfigMap", name).get("data", {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            assert "secretKeyRef" in item["valueFrom"], item
            env[item["name"]] = SECRET_SAMPLES[item["name"]]
    return env


def quantity(value: str | int) -> float:
    """A Kubernetes resource quantity as a number (enough of the grammar for these files)."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match and (match[2] == "" or match[2] in units), f"unparsed quantity {value!r}"
    return float(match[1]) * units.get(match[2], 1)


# --- rendering and schemas -------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_renders_and_validates_strictly(target: Rendered, version: str) -> None:
    assert target.objects, f"{target.name} rendered nothing"
    errors = []
    for obj in target.objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{name_of(obj)}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{name_of(obj)}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_namespace_enforces_restricted_profile(overlay: Rendered) -> None:
    (ns,) = overlay.of_kind("Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in overlay.objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == overlay.namespace, name_of(obj)


def test_images_are_pinned(overlay: Rendered) -> None:
    for workload, container in overlay.containers():
        image = container["image"]
        ref = image.rsplit("/", 1)[-1]
        assert "@sha256:" in image or ":" in ref, f"{name_of(workload)}: {image} has no tag"
        assert not ref.endswith(":latest"), f"{name_of(workload)}: {image} uses latest"


def test_prod_pins_a_release_of_fanline(prod: Rendered) -> None:
    for _, container, _ in prod.fanline_containers():
        image = container["image"]
        assert "@sha256:" in image or re.search(r":v?\d+\.\d+\.\d+$", image), image


# --- containers --------------------------------------------------------------------------


def test_every_container_has_probes_and_bounded_resources(overlay: Rendered) -> None:
    for workload, container in overlay.containers():
        where = f"{overlay.name} {name_of(workload)}/{container['name']}"
        if workload["kind"] != "Job":  # a Job's deadline bounds it instead (next test)
            assert "readinessProbe" in container, where
            assert "livenessProbe" in container, where
        resources = container.get("resources", {})
        for resource in ("cpu", "memory"):
            request = resources.get("requests", {}).get(resource)
            limit = resources.get("limits", {}).get(resource)
            assert request is not None and limit is not None, f"{where}: {resource}"
            assert quantity(request) <= quantity(limit), f"{where}: {resource}"


def test_jobs_end(overlay: Rendered) -> None:
    # No probes watch a Job's pod, so a hung one must still be stopped, and retries are finite.
    for job in overlay.of_kind("Job"):
        spec = job["spec"]
        assert 0 < spec.get("activeDeadlineSeconds", 0) <= 3600, name_of(job)
        assert 0 <= spec.get("backoffLimit", -1) <= 10, name_of(job)
        assert spec["template"]["spec"]["restartPolicy"] in {"OnFailure", "Never"}, name_of(job)


def test_fanline_probes_use_grpc_health(overlay: Rendered) -> None:
    for workload, container, _ in overlay.fanline_containers():
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert set(container[probe]) & {"grpc", "httpGet", "exec", "tcpSocket"} == {"grpc"}, (
                f"{name_of(workload)} {probe}"
            )


def test_every_pod_runs_restricted(overlay: Rendered) -> None:
    for workload, container in overlay.containers():
        where = f"{overlay.name} {name_of(workload)}/{container['name']}"
        pod = overlay.pod_spec(workload)
        pod_ctx = pod.get("securityContext", {})
        ctx = {**pod_ctx, **container.get("securityContext", {})}
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), where
        assert not any("hostPath" in v for v in pod.get("volumes", [])), where
        assert ctx.get("runAsNonRoot") is True, where
        assert ctx.get("runAsUser", 1) != 0, where
        assert ctx.get("allowPrivilegeEscalation") is False, where
        assert ctx.get("readOnlyRootFilesystem") is True, where
        assert not ctx.get("privileged"), where
        assert ctx.get("capabilities", {}).get("drop") == ["ALL"], where
        assert not ctx.get("capabilities", {}).get("add"), where
        assert ctx.get("seccompProfile", {}).get("type") in {"RuntimeDefault", "Localhost"}, where
        # A read-only root needs a writable /tmp for Python and the servers' temp files.
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        assert "emptyDir" in volumes[mounts["/tmp"]], where
        assert pod.get("automountServiceAccountToken") is False, where


def test_fanline_runs_as_the_image_user(overlay: Rendered) -> None:
    for workload, _, _ in overlay.fanline_containers():
        ctx = overlay.pod_spec(workload)["securityContext"]
        assert (ctx["runAsUser"], ctx["runAsGroup"]) == (10001, 10001), name_of(workload)


# --- configuration ----------------------------------------------------------------------


def test_configmap_holds_exactly_the_fanline_settings(overlay: Rendered) -> None:
    keys = set(overlay.config)
    assert {k for k in keys if k.startswith("FANLINE_")} == set(env_names())
    otel = {k for k in keys if k.startswith("OTEL_")}
    assert REQUIRED_OTEL <= otel
    # Per-Deployment, so each role reports under its own name.
    assert "OTEL_SERVICE_NAME" not in otel
    assert keys <= set(env_names()) | otel


def test_every_container_env_is_known_and_valid(overlay: Rendered) -> None:
    names = set()
    for workload, container, role in overlay.fanline_containers():
        env = effective_env(overlay, container)
        unknown = {k for k in env if k.startswith("FANLINE_")} - set(env_names())
        assert not unknown, f"{name_of(workload)} sets unknown settings {unknown}"
        settings = load_settings(env)
        assert settings.bind_host == "0.0.0.0", f"{role} must listen on the pod IP"
        assert settings.redis_url, f"{role} has no store URL"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://")
        # Neither Jaeger nor the collector's pipeline accepts OTLP metrics: they are scraped.
        assert env.get("OTEL_METRICS_EXPORTER") == "none", role
        names.add(env["OTEL_SERVICE_NAME"])
    assert len(names) == len(ROLES), "each role needs its own OTEL_SERVICE_NAME"


def test_prod_takes_secrets_from_a_secret(prod: Rendered, dev: Rendered) -> None:
    assert prod.config["FANLINE_PAGE_TOKEN_SECRET"] != dev.config["FANLINE_PAGE_TOKEN_SECRET"]
    for workload, container, _ in prod.fanline_containers():
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"] for e in container.get("env", []) if "valueFrom" in e
        }
        assert set(refs) == set(SECRET_SAMPLES), name_of(workload)


# --- roles, ports and load balancing ----------------------------------------------------


def test_each_role_runs_once_with_the_image_entrypoint(overlay: Rendered) -> None:
    roles = [role for _, _, role in overlay.fanline_containers()]
    assert sorted(roles) == sorted(ROLES)
    for workload, container, _ in overlay.fanline_containers():
        # No `command`: the image's ENTRYPOINT (fanline) runs, `args` select the role.
        assert "command" not in container, name_of(workload)


def test_ports_agree_across_config_services_probes_and_containers(overlay: Rendered) -> None:
    env_by_role = {
        role: effective_env(overlay, container) for _, container, role in overlay.fanline_containers()
    }
    for workload, container, role in overlay.fanline_containers():
        settings = load_settings(env_by_role[role])
        host, _, port_text = getattr(settings, ROLE_ADDR[role]).rpartition(":")
        port = int(port_text)
        where = f"{overlay.name} {role}"
        # Every role dials the same address for this role.
        assert len({getattr(load_settings(e), ROLE_ADDR[role]) for e in env_by_role.values()}) == 1

        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["grpc"] == port, where
        assert ports["metrics"] == settings.metrics_port != 0, where
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/port") == str(settings.metrics_port), where
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == port, f"{where} {probe}"

        service = overlay.get("Service", host)
        assert service["spec"].get("clusterIP") == "None", f"{where}: Service must be headless"
        assert selector_matches({"matchLabels": service["spec"]["selector"]}, pod_labels(workload))
        others = [
            w
            for w in overlay.workloads
            if w is not workload
            and selector_matches({"matchLabels": service["spec"]["selector"]}, pod_labels(w))
        ]
        assert not others, f"{where}: Service {host} also selects {[name_of(w) for w in others]}"
        service_ports = {p["name"]: p for p in service["spec"]["ports"]}
        for name, expected in (("grpc", port), ("metrics", settings.metrics_port)):
            assert service_ports[name]["port"] == expected, f"{where} Service port {name}"
            target = service_ports[name]["targetPort"]
            assert (ports[target] if isinstance(target, str) else target) == expected, where


def test_graceful_shutdown_fits_in_the_termination_grace(overlay: Rendered) -> None:
    for workload, container, role in overlay.fanline_containers():
        settings = load_settings(effective_env(overlay, container))
        pre_stop = container.get("lifecycle", {}).get("preStop", {})
        delay = float(pre_stop.get("sleep", {}).get("seconds", 0))
        assert set(pre_stop) <= {"sleep"}, f"{role}: unexpected preStop {pre_stop}"
        budget = overlay.pod_spec(workload).get("terminationGracePeriodSeconds", 30)
        drain = settings.shutdown_drain_s
        # Some slack for the process to exit after the last call.
        assert delay + drain + settings.shutdown_grace_s + 5 <= budget, (
            f"{overlay.name} {role}: {delay}+{drain}+{settings.shutdown_grace_s} vs {budget}"
        )
        if role != "worker":
            # Callers must see the pod leave DNS before it refuses calls.
            assert delay + drain > 0, f"{role}: no drain before the server stops"


def test_rollouts_never_reduce_capacity(overlay: Rendered) -> None:
    for workload, _, _ in overlay.fanline_containers():
        strategy = workload["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate", name_of(workload)
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0, name_of(workload)


# --- availability -------------------------------------------------------------------------


def test_autoscalers_own_the_replica_counts(overlay: Rendered) -> None:
    targets = {}
    for hpa in overlay.of_kind("HorizontalPodAutoscaler"):
        assert hpa["apiVersion"] == "autoscaling/v2"
        ref = hpa["spec"]["scaleTargetRef"]
        deployment = overlay.get(ref["kind"], ref["name"])
        # Left unset, `kubectl apply` never fights the autoscaler over the count.
        assert "replicas" not in deployment["spec"], name_of(deployment)
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        targets[ref["name"]] = hpa
    scaled = {role for w, _, role in overlay.fanline_containers() if w["metadata"]["name"] in targets}
    assert scaled == HPA_ROLES


def test_prod_runs_more_replicas_than_dev(prod: Rendered, dev: Rendered) -> None:
    def floor(rendered: Rendered) -> dict[str, int]:
        counts = {
            h["spec"]["scaleTargetRef"]["name"]: h["spec"]["minReplicas"]
            for h in rendered.of_kind("HorizontalPodAutoscaler")
        }
        for w, _, _ in rendered.fanline_containers():
            counts.setdefault(w["metadata"]["name"], w["spec"].get("replicas", 1))
        return counts

    prod_floor, dev_floor = floor(prod), floor(dev)
    assert set(prod_floor) == set(dev_floor)
    for name, count in prod_floor.items():
        assert count > dev_floor[name] and count >= 2, name


def test_every_fanline_workload_has_a_disruption_budget(overlay: Rendered) -> None:
    budgets = overlay.of_kind("PodDisruptionBudget")
    for workload, _, _ in overlay.fanline_containers():
        matching = [b for b in budgets if selector_matches(b["spec"]["selector"], pod_labels(workload))]
        assert len(matching) == 1, name_of(workload)
        assert matching[0]["spec"].get("maxUnavailable") == 1, name_of(workload)


def test_fanline_pods_spread_over_zones_and_nodes(overlay: Rendered) -> None:
    for workload, _, _ in overlay.fanline_containers():
        constraints = overlay.pod_spec(workload).get("topologySpreadConstraints", [])
        keys = set()
        for constraint in constraints:
            assert selector_matches(constraint["labelSelector"], pod_labels(workload))
            keys.add(constraint["topologyKey"])
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, name_of(workload)
