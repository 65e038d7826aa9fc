"""The valkey-cluster component, as rendered in the dev-cluster overlay.

Its pods pass the checks every overlay gets (schemas, restricted security, probes, resources,
network paths); these tests cover what only a cluster has: the topology the init Job creates,
how nodes announce themselves, and that Fanline's seeds are the pods' stable DNS names.
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from conftest import Obj, Rendered

NAME = "valkey-cluster"
MASTERS = 3
REPLICAS_PER_MASTER = 1


def statefulset(rendered: Rendered) -> Obj:
    return rendered.get("StatefulSet", NAME)


def headless_service(rendered: Rendered) -> Obj:
    """The Service that names the StatefulSet's pods."""
    service = rendered.get("Service", statefulset(rendered)["spec"]["serviceName"])
    assert service["spec"].get("clusterIP") == "None", "pod DNS names need a headless Service"
    return service


def container(workload: Obj) -> Obj:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return dict(only)


def script(workload: Obj) -> str:
    """The shell script a `sh -c` container runs."""
    c = container(workload)
    assert c["command"] == ["sh", "-c"], c["command"]
    (text,) = c["args"]
    return str(text)


def server_flags(text: str) -> dict[str, str]:
    """`--name value` pairs of the script's `exec valkey-server ...` line."""
    _, found, tail = text.partition("exec valkey-server")
    assert found, "the script does not exec valkey-server"
    words = shlex.split(tail.replace("\\\n", " "))
    assert len(words) % 2 == 0 and all(w.startswith("--") for w in words[::2]), words
    return dict(zip(words[::2], words[1::2], strict=True))


def env(c: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in c.get("env", [])}


def pod_dns_names(rendered: Rendered) -> list[str]:
    """valkey-cluster-<ordinal>.<headless Service>, for every pod the StatefulSet runs."""
    sts = statefulset(rendered)
    service = headless_service(rendered)["metadata"]["name"]
    return [f"{NAME}-{i}.{service}" for i in range(sts["spec"]["replicas"])]


def client_port(rendered: Rendered) -> int:
    ports = {p["name"]: p["port"] for p in headless_service(rendered)["spec"]["ports"]}
    return int(ports["redis"])


def test_statefulset_runs_masters_and_replicas(dev_cluster: Rendered) -> None:
    sts = statefulset(dev_cluster)
    assert sts["spec"]["replicas"] == MASTERS * (1 + REPLICAS_PER_MASTER) == 6
    # Every node must start at once: the init Job waits for all of them.
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    service = headless_service(dev_cluster)
    assert service["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    # The init Job and peers find nodes before they are ready (ready = cluster formed).
    assert service["spec"].get("publishNotReadyAddresses") is True
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"redis": 6379, "cluster-bus": 16379}


def test_nodes_run_in_cluster_mode_with_state_on_the_volume(dev_cluster: Rendered) -> None:
    sts = statefulset(dev_cluster)
    flags = server_flags(script(sts))
    assert flags["--cluster-enabled"] == "yes"
    assert flags["--cluster-node-timeout"] == "5000"
    assert flags["--appendonly"] == "yes"
    assert flags["--port"] == str(client_port(dev_cluster))
    assert flags["--maxmemory-policy"] == "noeviction"  # the fan-out queue lives in the store
    # nodes.conf and the AOF must outlive the pod: both on the claim template's volume.
    mounts = {m["mountPath"]: m["name"] for m in container(sts)["volumeMounts"]}
    claims = {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
    assert mounts["/data"] in claims
    assert flags["--dir"] == "/data"
    assert flags["--cluster-config-file"].startswith("/data/")


def test_nodes_announce_their_pod_dns_names(dev_cluster: Rendered) -> None:
    sts = statefulset(dev_cluster)
    flags = server_flags(script(sts))
    service = headless_service(dev_cluster)["metadata"]["name"]
    # Clients follow MOVED and CLUSTER SLOTS to names that survive a pod's new IP.
    assert flags["--cluster-announce-hostname"] == f"$POD_NAME.{service}"
    assert flags["--cluster-preferred-endpoint-type"] == "hostname"
    variables = env(container(sts))
    assert variables["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # The bus needs an IP; the current one, not whatever nodes.conf remembers.
    assert flags["--cluster-announce-ip"] == "$POD_IP"
    assert variables["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


def test_init_job_creates_three_masters_with_one_replica_each(dev_cluster: Rendered) -> None:
    job = dev_cluster.get("Job", "valkey-cluster-init")
    variables = env(container(job))
    nodes = variables["VALKEY_NODES"]["value"].split()
    replicas = int(variables["VALKEY_REPLICAS"]["value"])
    port = client_port(dev_cluster)
    # Every pod of the StatefulSet, once each, by its stable name.
    assert nodes == [f"{name}:{port}" for name in pod_dns_names(dev_cluster)]
    assert replicas == REPLICAS_PER_MASTER
    assert len(nodes) % (1 + replicas) == 0 and len(nodes) // (1 + replicas) == MASTERS

    text = script(job)
    (create,) = [line.strip() for line in text.splitlines() if "--cluster create" in line]
    assert shlex.split(create) == [
        "valkey-cli",
        "--cluster",
        "create",
        "$VALKEY_NODES",
        "--cluster-replicas",
        "$VALKEY_REPLICAS",
        "--cluster-yes",
    ]
    # Idempotent: create only runs while no node owns a slot, then the Job waits for ok.
    guard = text.index('if [ "$owners" -eq 0 ]; then')
    assert "cluster_slots_assigned" in text[:guard] and text.index(create) > guard
    assert re.search(r"until .*cluster info \| grep -q '\^cluster_state:ok'", text[text.index(create) :])


def test_config_points_fanline_at_the_cluster_seeds(dev_cluster: Rendered, dev: Rendered) -> None:
    config = dev_cluster.config
    assert config["FANLINE_REDIS_MODE"] == "cluster"
    assert dev.config["FANLINE_REDIS_MODE"] == "single"
    seeds = [urlsplit(url) for url in config["FANLINE_REDIS_URL"].split(",")]
    assert len(seeds) == MASTERS
    names = pod_dns_names(dev_cluster)
    for seed in seeds:
        assert seed.scheme == "redis" and seed.path in {"", "/0"}, seed.geturl()
        assert seed.hostname in names and seed.port == client_port(dev_cluster), seed.geturl()
    assert len({s.hostname for s in seeds}) == len(seeds), "seeds must be distinct pods"
    # Each master has one replica to wait for.
    assert config["FANLINE_STORE_WAIT_REPLICAS"] == str(REPLICAS_PER_MASTER)


def test_the_single_store_is_gone(dev_cluster: Rendered) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in dev_cluster.objects}
    assert not {("StatefulSet", "redis"), ("Service", "redis"), ("NetworkPolicy", "redis")} & kinds


def test_disruption_budget_takes_one_node_at_a_time(dev_cluster: Rendered) -> None:
    labels = statefulset(dev_cluster)["spec"]["template"]["metadata"]["labels"]
    budgets = [
        b
        for b in dev_cluster.of_kind("PodDisruptionBudget")
        if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]
    assert [b["spec"].get("maxUnavailable") for b in budgets] == [1]
