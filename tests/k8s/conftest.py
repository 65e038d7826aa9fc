"""Renders the kustomize overlays once per session and gives tests a typed view of the objects."""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
# Overlays with an optional component switched on the way docs/deploy.md says (listed under the
# overlay's `components:`): NAME+COMPONENT. They must pass every check the plain overlays do.
VARIANTS = {
    "prod+cert-manager": ("prod", "cert-manager"),
    "prod+keda": ("prod", "keda"),
    "prod+monitoring": ("prod", "monitoring"),
}
OVERLAYS = (*sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir()), *VARIANTS)
# Every kustomization directory that must render; base is included to catch errors at the source.
TARGETS = ("base", *(f"overlays/{name}" for name in OVERLAYS))

Obj = dict[str, Any]


def kubectl_path() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl is not installed: cannot render the kustomize overlays")
    return path


@functools.cache
def render(target: str) -> tuple[Obj, ...]:
    """`kubectl kustomize k8s/<target>` as parsed objects (cached: rendering is the slow part)."""
    name = target.removeprefix("overlays/")
    if name in VARIANTS:
        return render_variant(*VARIANTS[name])
    return kustomize(K8S / target, f"k8s/{target}")


def render_variant(overlay: str, component: str) -> tuple[Obj, ...]:
    """The overlay with k8s/components/<component> added to its `components:`, in a copy of k8s/."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "k8s"
        shutil.copytree(K8S, copy)
        kustomization = copy / "overlays" / overlay / "kustomization.yaml"
        doc = yaml.safe_load(kustomization.read_text())
        doc["components"] = [*doc.get("components", []), f"../../components/{component}"]
        kustomization.write_text(yaml.safe_dump(doc, sort_keys=False))
        return kustomize(kustomization.parent, f"k8s/overlays/{overlay} with components/{component}")


def kustomize(directory: Path, what: str) -> tuple[Obj, ...]:
    result = subprocess.run(
        [kubectl_path(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {what} failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@dataclass(frozen=True)
class Rendered:
    name: str
    objects: tuple[Obj, ...]

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> Obj:
        for obj in self.of_kind(kind):
            if obj["metadata"]["name"] == name:
                return obj
        raise AssertionError(f"{self.name}: no {kind} named {name!r}")

    @property
    def overlay(self) -> str:
        """The overlay directory this was rendered from: prod for prod+cert-manager."""
        return self.name.partition("+")[0]

    @property
    def namespace(self) -> str:
        (ns,) = self.of_kind("Namespace")
        return str(ns["metadata"]["name"])

    @property
    def workloads(self) -> list[Obj]:
        """Everything that runs pods: Deployments, StatefulSets and (run-to-completion) Jobs."""
        return [o for o in self.objects if o["kind"] in {"Deployment", "StatefulSet", "Job"}]

    def pod_spec(self, workload: Obj) -> Obj:
        return dict(workload["spec"]["template"]["spec"])

    def containers(self) -> Iterator[tuple[Obj, Obj]]:
        """(workload, container) for every container, init containers included."""
        for workload in self.workloads:
            spec = self.pod_spec(workload)
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                yield workload, container

    @property
    def config(self) -> dict[str, str]:
        """Data of the generated Fanline ConfigMap (its name carries a content hash)."""
        found = [o for o in self.of_kind("ConfigMap") if o["metadata"]["name"].startswith("fanline-config-")]
        assert len(found) == 1, f"{self.name}: expected one fanline-config ConfigMap"
        return {k: str(v) for k, v in found[0].get("data", {}).items()}

    def fanline_containers(self) -> Iterator[tuple[Obj, Obj, str]]:
        """(workload, container, role) for every container that runs `fanline serve <role>`."""
        for workload, container in self.containers():
            if workload["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "fanline":
                args = container.get("args", [])
                assert len(args) == 2 and args[0] == "serve", f"unexpected args {args}"
                yield workload, container, str(args[1])

    def role_workload(self, role: str) -> Obj:
        for workload, _, found in self.fanline_containers():
            if found == role:
                return workload
        raise AssertionError(f"{self.name}: no workload runs role {role!r}")


@pytest.fixture(scope="session", params=TARGETS)
def target(request: pytest.FixtureRequest) -> Rendered:
    """Every kustomization, base included."""
    name = str(request.param)
    return Rendered(name, render(name))


@pytest.fixture(scope="session", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> Rendered:
    """Every deployable overlay."""
    name = str(request.param)
    return Rendered(name, render(f"overlays/{name}"))


@pytest.fixture(scope="session")
def dev() -> Rendered:
    return Rendered("dev", render("overlays/dev"))


@pytest.fixture(scope="session")
def prod() -> Rendered:
    return Rendered("prod", render("overlays/prod"))


@pytest.fixture(scope="session")
def dev_cluster() -> Rendered:
    return Rendered("dev-cluster", render("overlays/dev-cluster"))


@pytest.fixture(scope="session")
def prod_keda() -> Rendered:
    """prod with the optional KEDA component (k8s/components/keda)."""
    return Rendered("prod+keda", render("overlays/prod+keda"))


@pytest.fixture(scope="session")
def prod_monitoring() -> Rendered:
    """prod with the optional monitoring component (k8s/components/monitoring)."""
    return Rendered("prod+monitoring", render("overlays/prod+monitoring"))


@pytest.fixture(scope="session")
def prod_cert_manager() -> Rendered:
    """prod with the optional cert-manager component (k8s/components/cert-manager)."""
    return Rendered("prod+cert-manager", render("overlays/prod+cert-manager"))
