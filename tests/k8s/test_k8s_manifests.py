"""Offline checks of the rendered Kubernetes manifests: schema validity and deployment policy."""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kubernetes_validate
import pytest
import yaml

from fanline.common.auth import HMAC_SECRET_MIN_CHARS
from fanline.common.config import DEV_PAGE_TOKEN_SECRET, SETTINGS, Settings, env_names, load_settings
from fanline.common.server import LIVENESS
from fanline.common.tls import make_dev_certs

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
# FANLINE_<X>_ADDR: the address every role dials for each role.
ROLE_ENVS = ("POST", "FANOUT", "TIMELINE", "WORKER")
REQUIRED_OTEL = {
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_METRIC_EXPORT_INTERVAL",
}
# Settings the code marks secret=True: never in a ConfigMap, always from the Secret below.
SECRET_SETTINGS = frozenset(s.env for s in SETTINGS if s.secret)
SECRET_NAME = "fanline-secrets"
# Not secret to the code, but prod's value carries the store's password: it is in the Secret too.
PROD_SECRET_SETTINGS = SECRET_SETTINGS | {"FANLINE_REDIS_URL"}
# Mutual TLS in prod: the Secret cert-manager writes (k8s/components/cert-manager) or the
# platform team creates, mounted here, and the key each FANLINE_TLS_* file has in it.
TLS_SECRET = "fanline-tls"
TLS_MOUNT = "/etc/fanline/tls"
TLS_KEYS = {"FANLINE_TLS_CERT": "tls.crt", "FANLINE_TLS_KEY": "tls.key", "FANLINE_TLS_CA": "ca.crt"}
# Settings that name a file the process reads (load_settings reads the TLS ones already).
FILE_SETTINGS = (*TLS_KEYS, "FANLINE_JWT_JWKS")
# Custom resources of optional components: kubernetes-validate ships only the built-in kinds'
# schemas, so these are skipped there by name and checked field by field in
# test_k8s_cert_manager.py, test_k8s_keda.py and test_k8s_monitoring.py instead.
CUSTOM_KINDS = frozenset({
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
    # test_k8s_keda.py
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    # test_k8s_monitoring.py
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
})
# Stand-ins for values that only exist in a cluster's Secrets (prod's is not in git). A Secret
# that an overlay renders (dev's) supplies its own values instead.
SECRET_SAMPLES = {
    "FANLINE_REDIS_URL": "rediss://:password@redis.example.internal:6379/0",
    # Mid-rotation: the new key signs, both verify.
    "FANLINE_JWT_SECRETS": (
        "jwt-sample-new-0123456789abcdef0123456789,jwt-sample-old-0123456789abcdef0123456789"
    ),
    "FANLINE_PAGE_TOKEN_SECRETS": "page-token-sample-0123456789abcdef0123456789",
}


def name_of(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """matchLabels only: that is all these manifests use for workload selectors."""
    assert set(selector) <= {"matchLabels"}, f"unsupported selector {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def pod_labels(workload: Obj) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def secret_key(env: str) -> str:
    """The fanline-secrets key holding a setting: FANLINE_JWT_SECRETS -> jwt-secrets."""
    return env.removeprefix("FANLINE_").lower().replace("_", "-")


def find_secret(rendered: Rendered, name: str) -> Obj | None:
    """The Secret the overlay renders under this name, or None if it is created outside git."""
    found = [s for s in rendered.of_kind("Secret") if s["metadata"]["name"] == name]
    assert len(found) <= 1, f"{rendered.name}: {len(found)} Secrets named {name}"
    return found[0] if found else None


def secret_data(secret: Obj) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
    data.update(secret.get("stringData", {}))
    return data


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
            assert set(item["valueFrom"]) == {"secretKeyRef"}, item
            ref = item["valueFrom"]["secretKeyRef"]
            secret = find_secret(rendered, ref["name"])
            if secret is None:
                env[item["name"]] = SECRET_SAMPLES[item["name"]]
            else:
                env[item["name"]] = secret_data(secret)[ref["key"]]
    return env


def mounted_source(rendered: Rendered, workload: Obj, container: Obj, path: str) -> tuple[Obj, str]:
    """(volume, key): the Secret or ConfigMap volume a container path lies on, and its key there."""
    volumes = {v["name"]: v for v in rendered.pod_spec(workload).get("volumes", [])}
    # The innermost mount wins.
    for mount in sorted(container.get("volumeMounts", []), key=lambda m: -len(m["mountPath"])):
        root = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(root):
            continue
        volume = volumes[mount["name"]]
        source = volume.get("secret") or volume.get("configMap")
        assert source is not None, f"{path} is on volume {volume['name']}, neither Secret nor ConfigMap"
        name = path.removeprefix(root)
        items = {i["path"]: i["key"] for i in source.get("items", [])}
        assert not items or name in items, f"{path}: volume {volume['name']} has no item {name}"
        return volume, items.get(name, name)
    raise AssertionError(f"{name_of(workload)}: {path} is on no mounted volume")


class MountedFiles:
    """Real files for the paths that file settings name, so load_settings (which reads the TLS
    files) sees what the container would: the rendered Secret's or ConfigMap's data, or, for
    prod's fanline-tls (created outside git), a development CA and certificate (`fanline certs`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @functools.cached_property
    def samples(self) -> dict[str, Path]:
        return make_dev_certs(self.root / "fanline-certs")

    def local(self, rendered: Rendered, workload: Obj, container: Obj, path: str) -> Path:
        volume, key = mounted_source(rendered, workload, container, path)
        if "secret" in volume:
            secret = find_secret(rendered, volume["secret"]["secretName"])
            if secret is None:
                assert volume["secret"]["secretName"] == TLS_SECRET, f"no stand-in for {volume}"
                assert key in self.samples, f"{path}: {TLS_SECRET} has no key {key}"
                return self.samples[key]
            data = secret_data(secret)[key]
        else:
            data = str(rendered.get("ConfigMap", volume["configMap"]["name"])["data"][key])
        local = self.root / rendered.name / workload["metadata"]["name"] / volume["name"] / key
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(data)
        return local


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> MountedFiles:
    return MountedFiles(tmp_path_factory.mktemp("mounted"))


def container_settings(rendered: Rendered, workload: Obj, container: Obj, files: MountedFiles) -> Settings:
    """The Settings a container starts with (file settings pointed at local copies of its files)."""
    env = effective_env(rendered, container)
    for name in FILE_SETTINGS:
        if env.get(name):
            env[name] = str(files.local(rendered, workload, container, env[name]))
    return load_settings(env)


def configmap_generator_keys() -> Iterator[tuple[str, str]]:
    """(source, KEY) for every literal and env-file line of every configMapGenerator in k8s/."""
    for kustomization in sorted((ROOT / "k8s").rglob("kustomization.yaml")):
        doc = yaml.safe_load(kustomization.read_text())
        where = str(kustomization.relative_to(ROOT))
        for generator in doc.get("configMapGenerator", []):
            for literal in generator.get("literals", []):
                yield where, literal.partition("=")[0].strip()
            for env_file in generator.get("envs", []):
                for line in (kustomization.parent / env_file).read_text().splitlines():
                    if line.strip() and not line.lstrip().startswith("#"):
                        yield f"{where} ({env_file})", line.partition("=")[0].strip()


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
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            continue
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


def test_prod_pins_fanline_by_digest(overlay: Rendered) -> None:
    # prod and its variants run exactly the image CI built: a digest, which no push can move
    # (the release job writes it into overlays/prod's `images:`). Dev runs its own local build.
    images = {container["image"] for _, container, _ in overlay.fanline_containers()}
    assert len(images) == 1, images
    (image,) = images
    if overlay.overlay == "prod":
        assert re.fullmatch(r"[a-z0-9.-]+(:\d+)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}", image), image
    else:
        assert image == "fanline:dev", image


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
        # Readiness follows the store; liveness only the process (a restart cannot fix a store).
        assert container["readinessProbe"]["grpc"].get("service", "") == "", name_of(workload)
        assert container["livenessProbe"]["grpc"].get("service") == LIVENESS, name_of(workload)


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


def test_configmap_holds_exactly_the_non_secret_settings(overlay: Rendered) -> None:
    public = set(env_names()) - SECRET_SETTINGS
    keys = set(overlay.config)
    assert {k for k in keys if k.startswith("FANLINE_")} == public
    otel = {k for k in keys if k.startswith("OTEL_")}
    assert REQUIRED_OTEL <= otel
    # Per-Deployment, so each role reports under its own name.
    assert "OTEL_SERVICE_NAME" not in otel
    assert keys <= public | otel


def test_no_secret_setting_in_any_configmap(target: Rendered) -> None:
    assert SECRET_SETTINGS, "services/common/config.py marks no setting secret"
    secret_values = {
        part
        for secret in target.of_kind("Secret")
        for value in secret_data(secret).values()
        for part in value.split(",")
    }
    for configmap in target.of_kind("ConfigMap"):
        data = {k: str(v) for k, v in configmap.get("data", {}).items()}
        leaked = SECRET_SETTINGS & set(data)
        assert not leaked, f"{target.name} {name_of(configmap)} holds secret settings {leaked}"
        for key, value in data.items():
            # Nor a secret's value under another name, nor the public page-token default.
            assert not any(s in value for s in secret_values), f"{name_of(configmap)} {key}"
            assert DEV_PAGE_TOKEN_SECRET not in value, f"{name_of(configmap)} {key}"


def test_no_secret_setting_in_any_configmap_generator_source() -> None:
    # Also the generators no overlay renders yet, and keys a later merge would hide.
    found = list(configmap_generator_keys())
    assert any(key == "FANLINE_AUTH" for _, key in found), "config.env was not read"
    leaked = [(where, key) for where, key in found if key in SECRET_SETTINGS]
    assert not leaked, leaked


def test_every_container_env_is_known_and_valid(overlay: Rendered, files: MountedFiles) -> None:
    names = set()
    for workload, container, role in overlay.fanline_containers():
        env = effective_env(overlay, container)
        unknown = {k for k in env if k.startswith("FANLINE_")} - set(env_names())
        assert not unknown, f"{name_of(workload)} sets unknown settings {unknown}"
        settings = container_settings(overlay, workload, container, files)
        assert settings.auth == "jwt", f"{overlay.name} {role}: every call must carry a token"
        # Reflection helps grpcurl in development; prod does not describe its API to callers.
        assert settings.reflection is (overlay.overlay != "prod"), f"{overlay.name} {role}"
        assert settings.bind_host == "0.0.0.0", f"{role} must listen on the pod IP"
        assert settings.redis_url, f"{role} has no store URL"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://")
        # Neither Jaeger nor the collector's pipeline accepts OTLP metrics: they are scraped.
        assert env.get("OTEL_METRICS_EXPORTER") == "none", role
        names.add(env["OTEL_SERVICE_NAME"])
    assert len(names) == len(ROLES), "each role needs its own OTEL_SERVICE_NAME"


def test_secret_settings_come_from_the_fanline_secret(overlay: Rendered) -> None:
    names = set()
    for workload, container, _ in overlay.fanline_containers():
        where = f"{overlay.name} {name_of(workload)}"
        entries = [e for e in container.get("env", []) if e["name"] in SECRET_SETTINGS]
        # Each exactly once, and never as a plain value.
        assert sorted(e["name"] for e in entries) == sorted(SECRET_SETTINGS), where
        for entry in entries:
            assert set(entry) == {"name", "valueFrom"}, f"{where} {entry['name']}"
            assert set(entry["valueFrom"]) == {"secretKeyRef"}, f"{where} {entry['name']}"
            ref = entry["valueFrom"]["secretKeyRef"]
            # Not optional: without the Secret the pod does not start (it never falls back).
            assert set(ref) == {"name", "key"}, f"{where} {entry['name']}"
            assert ref["key"] == secret_key(entry["name"]), f"{where} {entry['name']}"
            names.add(ref["name"])
            secret = find_secret(overlay, ref["name"])
            if secret is None:
                assert ref["name"] == SECRET_NAME, where  # created outside git, under its own name
            else:
                # Generated: kustomize names it with a content hash, so a new key rolls the pods.
                assert re.fullmatch(rf"{SECRET_NAME}-[a-z0-9]{{10}}", ref["name"]), where
                assert ref["key"] in secret_data(secret), f"{where} {entry['name']}"
    assert len(names) == 1, f"{overlay.name}: the roles read different Secrets {names}"


def test_dev_generates_development_only_secrets(dev: Rendered, dev_cluster: Rendered) -> None:
    for rendered in (dev, dev_cluster):
        (secret,) = rendered.of_kind("Secret")
        assert secret["metadata"]["name"].startswith(f"{SECRET_NAME}-"), rendered.name
        assert secret.get("type", "Opaque") == "Opaque", rendered.name
        data = secret_data(secret)
        by_env = {s.env: s for s in SETTINGS}
        assert set(data) == {secret_key(name) for name in SECRET_SETTINGS}, rendered.name
        for name in sorted(SECRET_SETTINGS):
            value = data[secret_key(name)]
            by_env[name].parse(value)  # each key long enough for the code
            for part in value.split(","):
                assert len(part) >= HMAC_SECRET_MIN_CHARS, f"{rendered.name} {name}"
                assert part != DEV_PAGE_TOKEN_SECRET, f"{rendered.name} {name}"
                # Named for what they are: public keys for development clusters only.
                assert part.startswith("dev-only-"), f"{rendered.name} {name}"
                assert "not-for-production" in part, f"{rendered.name} {name}"


def test_prod_secrets_are_created_outside_git(prod: Rendered, dev: Rendered) -> None:
    # The platform team creates fanline-secrets; prod generates no Secret from values in git.
    assert not prod.of_kind("Secret")
    # The store URL carries a password: only the Secret holds prod's.
    assert prod.config["FANLINE_REDIS_URL"] == ""
    assert set(SECRET_SAMPLES) == PROD_SECRET_SETTINGS
    for workload, container, _ in prod.fanline_containers():
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"] for e in container.get("env", []) if "valueFrom" in e
        }
        assert set(refs) == PROD_SECRET_SETTINGS, name_of(workload)
        for name, ref in refs.items():
            assert ref == {"name": SECRET_NAME, "key": secret_key(name)}, f"{name_of(workload)} {name}"
    # Neither dev's keys nor the public page-token default appear anywhere in prod.
    text = yaml.safe_dump_all(prod.objects)
    dev_keys = [p for s in dev.of_kind("Secret") for v in secret_data(s).values() for p in v.split(",")]
    assert dev_keys
    for key in [*dev_keys, DEV_PAGE_TOKEN_SECRET]:
        assert key not in text


# --- transport security -----------------------------------------------------------------


def tls_volume_mounts(rendered: Rendered, workload: Obj, container: Obj) -> list[tuple[Obj, Obj]]:
    """(volumeMount, volume) for every mount of the fanline-tls Secret in this container."""
    volumes = {v["name"]: v for v in rendered.pod_spec(workload).get("volumes", [])}
    return [
        (m, volumes[m["name"]])
        for m in container.get("volumeMounts", [])
        if volumes[m["name"]].get("secret", {}).get("secretName") == TLS_SECRET
    ]


def test_tls_is_mutual_everywhere_in_prod_and_off_in_dev(overlay: Rendered, files: MountedFiles) -> None:
    modes = set()
    for workload, container, role in overlay.fanline_containers():
        settings = container_settings(overlay, workload, container, files)
        where = f"{overlay.name} {role}"
        if settings.tls_cert:
            # Never one-way: with the CA, servers demand client certificates and clients trust
            # only that CA.
            assert settings.tls_key and settings.tls_ca, f"{where}: TLS without mutual TLS"
            assert settings.health_port, f"{where}: kubelet probes cannot speak TLS"
        modes.add(bool(settings.tls_cert))
    # All or none: a role without TLS could neither call nor be called by one with it.
    assert modes == {overlay.overlay == "prod"}, f"{overlay.name}: TLS on for {modes}"


def test_prod_mounts_the_tls_secret_in_every_fanline_container(prod: Rendered) -> None:
    fanline = {id(c) for _, c, _ in prod.fanline_containers()}
    for workload, container in prod.containers():
        where = f"{name_of(workload)}/{container['name']}"
        found = tls_volume_mounts(prod, workload, container)
        if id(container) not in fanline:
            # The key goes only where it is used.
            assert not found, f"{where} mounts {TLS_SECRET}"
            continue
        assert len(found) == 1, f"{where}: {len(found)} mounts of {TLS_SECRET}"
        ((mount, volume),) = found
        assert mount["mountPath"] == TLS_MOUNT, where
        assert mount.get("readOnly") is True, where
        # A subPath mount would never see the Secret change; the whole directory is mounted.
        assert "subPath" not in mount and "subPathExpr" not in mount, where
        secret = volume["secret"]
        # Not optional (without the Secret the pod waits instead of starting in plain text),
        # and no `items`: the keys are the files, as cert-manager writes them.
        assert set(secret) <= {"secretName", "defaultMode"}, f"{where}: {secret}"
        assert secret.get("defaultMode", 0o644) & 0o007 == 0, f"{where}: the key is world-readable"
    # Created by cert-manager or the platform team, never from git.
    assert find_secret(prod, TLS_SECRET) is None


def test_prod_tls_settings_point_into_the_mount(prod: Rendered, files: MountedFiles) -> None:
    for workload, container, role in prod.fanline_containers():
        env = effective_env(prod, container)
        ((_, volume),) = tls_volume_mounts(prod, workload, container)
        for setting, key in TLS_KEYS.items():
            assert env[setting] == f"{TLS_MOUNT}/{key}", f"{role} {setting}"
            assert mounted_source(prod, workload, container, env[setting]) == (volume, key), role
        # The files parse as the code expects (stand-ins for the Secret's keys).
        assert container_settings(prod, workload, container, files).tls() is not None, role


def test_prod_probes_ask_the_plain_text_health_port(prod: Rendered) -> None:
    health_port = int(prod.config["FANLINE_HEALTH_PORT"])
    assert health_port > 0
    for workload, container, role in prod.fanline_containers():
        env = effective_env(prod, container)
        assert int(env["FANLINE_HEALTH_PORT"]) == health_port, role
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["health"] == health_port, role
        probed = {container[p]["grpc"]["port"] for p in ("startupProbe", "readinessProbe", "livenessProbe")}
        assert probed == {health_port}, f"{name_of(workload)} probes {probed}"
        # Still readiness on "" and liveness on "liveness" (test_fanline_probes_use_grpc_health).
        assert container["livenessProbe"]["grpc"]["service"] == LIVENESS, role


def test_dev_stays_plain_text(dev: Rendered, dev_cluster: Rendered) -> None:
    for rendered in (dev, dev_cluster):
        for setting in TLS_KEYS:
            assert rendered.config[setting] == "", f"{rendered.name} {setting}"
        for workload, container, role in rendered.fanline_containers():
            assert not tls_volume_mounts(rendered, workload, container), f"{rendered.name} {role}"
            grpc_port = {p["name"]: p["containerPort"] for p in container["ports"]}["grpc"]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["grpc"]["port"] == grpc_port, f"{rendered.name} {role} {probe}"


def test_fanline_certs_cover_the_names_the_roles_dial(prod: Rendered, files: MountedFiles) -> None:
    # docs/deploy.md's hand-made fanline-tls for a test cluster comes from `fanline certs`: its
    # certificate must name every Service the roles dial and serve both ends of mutual TLS.
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    cert = x509.load_pem_x509_certificate(files.samples["tls.crt"].read_bytes())
    names = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                .get_values_for_type(x509.DNSName))
    dialed = {prod.config[f"FANLINE_{r}_ADDR"].rpartition(":")[0] for r in ROLE_ENVS}
    assert dialed <= names, dialed - names
    usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= usages


# --- roles, ports and load balancing ----------------------------------------------------


def test_each_role_runs_once_with_the_image_entrypoint(overlay: Rendered) -> None:
    roles = [role for _, _, role in overlay.fanline_containers()]
    assert sorted(roles) == sorted(ROLES)
    for workload, container, _ in overlay.fanline_containers():
        # No `command`: the image's ENTRYPOINT (fanline) runs, `args` select the role.
        assert "command" not in container, name_of(workload)


def test_ports_agree_across_config_services_probes_and_containers(
    overlay: Rendered, files: MountedFiles
) -> None:
    settings_by_role = {
        role: container_settings(overlay, workload, container, files)
        for workload, container, role in overlay.fanline_containers()
    }
    for workload, container, role in overlay.fanline_containers():
        settings = settings_by_role[role]
        host, _, port_text = getattr(settings, ROLE_ADDR[role]).rpartition(":")
        port = int(port_text)
        where = f"{overlay.name} {role}"
        # Every role dials the same address for this role.
        assert len({getattr(s, ROLE_ADDR[role]) for s in settings_by_role.values()}) == 1

        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["grpc"] == port, where
        assert ports["metrics"] == settings.metrics_port != 0, where
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/port") == str(settings.metrics_port), where
        # Kubelet's gRPC probes speak plain text only: with TLS they ask the plain-text health
        # port (FANLINE_HEALTH_PORT, served only when TLS is on); without, the gRPC port.
        if settings.tls_cert:
            probed = settings.health_port
            assert ports.get("health") == probed, f"{where}: no container port named health"
            assert probed not in {0, port, settings.metrics_port}, where
        else:
            probed = port
            assert "health" not in ports, f"{where}: a health port without TLS serves nothing"
        assert len(set(ports.values())) == len(ports), f"{where}: ports collide {ports}"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == probed, f"{where} {probe}"

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
        # Only the kubelet uses the health port, and it probes the pod itself.
        assert set(service_ports) == {"grpc", "metrics"}, f"{where} Service ports"
        for name, expected in (("grpc", port), ("metrics", settings.metrics_port)):
            assert service_ports[name]["port"] == expected, f"{where} Service port {name}"
            target = service_ports[name]["targetPort"]
            assert (ports[target] if isinstance(target, str) else target) == expected, where


def test_graceful_shutdown_fits_in_the_termination_grace(overlay: Rendered, files: MountedFiles) -> None:
    for workload, container, role in overlay.fanline_containers():
        settings = container_settings(overlay, workload, container, files)
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
    targets: dict[str, Obj] = {}
    # A KEDA ScaledObject (k8s/components/keda) stands for the HPA that KEDA creates from it.
    for scaler in [*overlay.of_kind("HorizontalPodAutoscaler"), *overlay.of_kind("ScaledObject")]:
        if scaler["kind"] == "HorizontalPodAutoscaler":
            assert scaler["apiVersion"] == "autoscaling/v2"
            low, high = scaler["spec"]["minReplicas"], scaler["spec"]["maxReplicas"]
        else:
            low, high = scaler["spec"]["minReplicaCount"], scaler["spec"]["maxReplicaCount"]
        ref = scaler["spec"]["scaleTargetRef"]
        deployment = overlay.get(ref.get("kind", "Deployment"), ref["name"])
        # Left unset, `kubectl apply` never fights the autoscaler over the count.
        assert "replicas" not in deployment["spec"], name_of(deployment)
        assert 1 <= low <= high
        # Two autoscalers on one Deployment would fight over its count.
        assert ref["name"] not in targets, f"{overlay.name}: {ref['name']} has two autoscalers"
        targets[ref["name"]] = scaler
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
