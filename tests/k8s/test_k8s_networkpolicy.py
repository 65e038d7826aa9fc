"""NetworkPolicies allow exactly Fanline's call graph.

A small evaluator of the NetworkPolicy semantics (selectors, policy types, peers, ports,
additive rules) runs over the rendered policies; every (source pod, destination port) pair of
a modelled cluster is then checked against the expected set, so an extra path fails as surely
as a missing one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Obj, Rendered

Labels = Mapping[str, str]
Flow = tuple[str, str, int, str]  # source, destination, port, protocol


@dataclass(frozen=True)
class Endpoint:
    name: str
    namespace: str | None  # None: outside the cluster, addressed by `ip`
    labels: Labels = field(default_factory=dict)
    ports: tuple[tuple[str, int, str], ...] = ()  # (name, port, protocol) it listens on
    ip: str | None = None
    deployed: bool = False  # a pod from the manifests (as opposed to the modelled world)
    # The node a destination pod runs on (the kubelet, which probes it): NetworkPolicy always
    # admits connections from the pod's own node, and most CNIs do not apply policies to
    # kubelet probes at all.
    own_node: bool = False


@dataclass
class Cluster:
    namespaces: dict[str, Labels]
    endpoints: list[Endpoint]
    policies: list[Obj]

    def allowed(self, src: Endpoint, dst: Endpoint, port: int, protocol: str) -> bool:
        egress = src.namespace is None or self.permits(src, dst, port, protocol, "Egress")
        ingress = (
            dst.namespace is None or src.own_node or self.permits(dst, src, port, protocol, "Ingress")
        )
        return egress and ingress

    def permits(self, subject: Endpoint, peer: Endpoint, port: int, protocol: str, direction: str) -> bool:
        selecting = [
            p
            for p in self.policies
            if p["metadata"]["namespace"] == subject.namespace
            and matches(p["spec"].get("podSelector", {}), subject.labels)
            and direction in policy_types(p)
        ]
        if not selecting:
            return True  # not isolated in this direction
        key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        # The port belongs to the destination: the peer for egress, the subject for ingress.
        dst = peer if direction == "Egress" else subject
        for policy in selecting:
            for rule in policy["spec"].get(key) or []:
                peers = rule.get(peers_key) or []
                if peers and not any(
                    self._peer_matches(x, policy["metadata"]["namespace"], peer) for x in peers
                ):
                    continue
                if port_matches(rule.get("ports") or [], dst, port, protocol):
                    return True
        return False

    def _peer_matches(self, peer: Obj, policy_ns: str, ep: Endpoint) -> bool:
        if "ipBlock" in peer:
            if ep.ip is None:
                return False  # ipBlock is for addresses outside the cluster
            address = ipaddress.ip_address(ep.ip)
            block = peer["ipBlock"]
            return address in ipaddress.ip_network(block["cidr"]) and not any(
                address in ipaddress.ip_network(c) for c in block.get("except", [])
            )
        if ep.namespace is None:
            return False
        if "namespaceSelector" in peer:
            ns_ok = matches(peer["namespaceSelector"], self.namespaces[ep.namespace])
        else:
            ns_ok = ep.namespace == policy_ns
        return ns_ok and matches(peer.get("podSelector", {}), ep.labels)


def policy_types(policy: Obj) -> list[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return list(spec["policyTypes"])
    return ["Ingress", *(["Egress"] if "egress" in spec else [])]


def matches(selector: Obj, labels: Labels) -> bool:
    """A LabelSelector; the empty selector matches everything."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def port_matches(rules: list[Obj], dst: Endpoint, port: int, protocol: str) -> bool:
    if not rules:
        return True
    for rule in rules:
        if rule.get("protocol", "TCP") != protocol:
            continue
        wanted: Any = rule.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):  # a named port resolves against the destination pod
            if (wanted, port, protocol) in dst.ports:
                return True
        elif wanted <= port <= rule.get("endPort", wanted):
            return True
    return False


# --- the modelled cluster ---------------------------------------------------------------

ROLES = ("post", "fanout", "fanout-worker", "timeline")
CLIENT = {"fanline.io/client": "true"}
OUTSIDE_IP = "203.0.113.7"
STORE_IP = "10.20.30.40"  # a managed Redis in a private subnet (prod)
NODE_IP = "10.0.0.10"  # the node a pod runs on
OTHER_NODE_IP = "10.0.0.11"  # any other node, or a host-network pod on one
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
UNLISTED = ("unlisted", 12345, "TCP")


def cluster_for(rendered: Rendered) -> Cluster:
    ns = rendered.namespace
    (namespace_obj,) = rendered.of_kind("Namespace")
    namespaces: dict[str, Labels] = {
        ns: {**namespace_obj["metadata"].get("labels", {}), "kubernetes.io/metadata.name": ns},
        "kube-system": {"kubernetes.io/metadata.name": "kube-system"},
        "monitoring": {"kubernetes.io/metadata.name": "monitoring", "fanline.io/metrics-scraper": "true"},
        "shop": {"kubernetes.io/metadata.name": "shop", **CLIENT},
        "other": {"kubernetes.io/metadata.name": "other"},
    }
    endpoints = [
        Endpoint(
            w["metadata"]["name"],
            ns,
            w["spec"]["template"]["metadata"]["labels"],
            tuple(
                (p.get("name", ""), p["containerPort"], p.get("protocol", "TCP"))
                for c in w["spec"]["template"]["spec"]["containers"]
                for p in c.get("ports", [])
            ),
            deployed=True,
        )
        for w in rendered.workloads
    ]
    endpoints += [
        Endpoint("client", ns, CLIENT),
        Endpoint("stranger", ns),
        Endpoint("shop-client", "shop", CLIENT),
        Endpoint("shop-other", "shop"),
        Endpoint("other-client", "other", CLIENT),
        Endpoint("prometheus", "monitoring", {"app": "prometheus"}),
        Endpoint(
            "kube-dns", "kube-system", {"k8s-app": "kube-dns"}, (("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"))
        ),
        Endpoint("internet", None, ports=(("https", 443, "TCP"),), ip=OUTSIDE_IP),
        Endpoint("managed-redis", None, ports=(("redis", 6379, "TCP"),), ip=STORE_IP),
        Endpoint("kubelet", None, ports=(("kubelet", 10250, "TCP"),), ip=NODE_IP, own_node=True),
        Endpoint("other-node", None, ports=(("kubelet", 10250, "TCP"),), ip=OTHER_NODE_IP),
    ]
    # Every endpoint also listens on a port nobody should reach, so over-broad rules show up.
    endpoints = [replace(e, ports=(*e.ports, UNLISTED)) for e in endpoints]
    return Cluster(namespaces, endpoints, rendered.of_kind("NetworkPolicy"))


def peers(src: Endpoint, dst: Endpoint) -> bool:
    """Whether src may call dst: another endpoint, or another pod of the same deployed workload
    (replicas of a role, nodes of a cluster), which is what a (src, src) flow stands for."""
    return dst is not src or src.deployed


def all_flows(cluster: Cluster) -> set[Flow]:
    return {
        (src.name, dst.name, port, proto)
        for src in cluster.endpoints
        if src.namespace is not None
        for dst in cluster.endpoints
        if peers(src, dst)
        for _, port, proto in dst.ports
        if cluster.allowed(src, dst, port, proto)
    }


def one_sided_flows(cluster: Cluster, direction: str) -> set[Flow]:
    """What our pods' own egress (or ingress) rules admit, whatever the other end says."""
    flows = set()
    for src in cluster.endpoints:
        for dst in cluster.endpoints:
            subject, peer = (src, dst) if direction == "Egress" else (dst, src)
            if not peers(src, dst) or src.namespace is None or not subject.deployed:
                continue
            for _, port, proto in dst.ports:
                if cluster.permits(subject, peer, port, proto, direction):
                    flows.add((src.name, dst.name, port, proto))
    return flows


def check_exact(cluster: Cluster, expected: set[Flow]) -> None:
    actual = all_flows(cluster)
    assert actual == expected, diff(actual, expected)
    # Each end is exact on its own too: an egress rule the peer happens to block still fails.
    by_name = {e.name: e for e in cluster.endpoints}
    for direction, end in (("Egress", 0), ("Ingress", 1)):
        actual = one_sided_flows(cluster, direction)
        wanted = {f for f in expected if by_name[f[end]].deployed}
        assert actual == wanted, f"{direction} rules:\n" + diff(actual, wanted)


def expected_flows(cluster: Cluster, store: tuple[str, int], traces: str) -> set[Flow]:
    dns = {("kube-dns", 53, "UDP"), ("kube-dns", 53, "TCP")}
    flows: set[Flow] = set()
    for role in ROLES:
        for dst, port, proto in {*dns, (*store, "TCP"), (traces, 4317, "TCP")}:
            flows.add((role, dst, port, proto))
        flows.add(("prometheus", role, 9464, "TCP"))
    flows |= {("post", "fanout", 50052, "TCP"), ("timeline", "post", 50051, "TCP")}
    for client in ("client", "shop-client"):
        flows |= {
            (client, "post", 50051, "TCP"),
            (client, "fanout", 50052, "TCP"),
            (client, "timeline", 50053, "TCP"),
        }
    # Pods we do not deploy are not restricted by our policies: they may reach anything that
    # is not ours (DNS, the internet, the managed store).
    for src in cluster.endpoints:
        if src.namespace is None or src.deployed:
            continue
        for dst in cluster.endpoints:
            if not dst.deployed and dst is not src:
                flows |= {(src.name, dst.name, port, proto) for _, port, proto in dst.ports}
    return flows


def diff(actual: set[Flow], expected: set[Flow]) -> str:
    def show(flows: Iterable[Flow]) -> str:
        return "\n".join(f"  {s} -> {d}:{p}/{proto}" for s, d, p, proto in sorted(flows))

    return (
        f"allowed but not in the call graph:\n{show(actual - expected)}\n"
        f"in the call graph but blocked:\n{show(expected - actual)}"
    )


def test_dev_policies_allow_exactly_the_call_graph(dev: Rendered) -> None:
    cluster = cluster_for(dev)
    check_exact(cluster, expected_flows(cluster, store=("redis", 6379), traces="jaeger"))


def test_prod_policies_allow_exactly_the_call_graph(prod: Rendered) -> None:
    cluster = cluster_for(prod)
    expected = expected_flows(cluster, store=("managed-redis", 6379), traces="otel-collector")
    # The collector forwards to Jaeger, which it finds through DNS.
    expected |= {
        ("otel-collector", "jaeger", 4317, "TCP"),
        ("otel-collector", "kube-dns", 53, "UDP"),
        ("otel-collector", "kube-dns", 53, "TCP"),
    }
    check_exact(cluster, expected)


def test_dev_cluster_policies_allow_exactly_the_call_graph(dev_cluster: Rendered) -> None:
    cluster = cluster_for(dev_cluster)
    expected = expected_flows(cluster, store=("valkey-cluster", 6379), traces="jaeger")
    dns = {("kube-dns", 53, "UDP"), ("kube-dns", 53, "TCP")}
    # Nodes replicate (6379) and gossip (16379) with each other and look peers up by name;
    # the init Job only talks to the client port.
    expected |= {("valkey-cluster", "valkey-cluster", port, "TCP") for port in (6379, 16379)}
    expected |= {("valkey-cluster", *d) for d in dns}
    expected |= {("valkey-cluster-init", "valkey-cluster", 6379, "TCP")}
    expected |= {("valkey-cluster-init", *d) for d in dns}
    check_exact(cluster, expected)


def test_cluster_bus_is_open_between_cluster_nodes_only(dev_cluster: Rendered) -> None:
    cluster = cluster_for(dev_cluster)
    nodes = dev_cluster.get("StatefulSet", "valkey-cluster")
    bus = {
        p["containerPort"]
        for c in nodes["spec"]["template"]["spec"]["containers"]
        for p in c["ports"]
        if p["name"] == "cluster-bus"
    }
    assert bus == {16379}
    to_bus = {(src, dst) for src, dst, port, _ in all_flows(cluster) if port == 16379}
    assert to_bus == {("valkey-cluster", "valkey-cluster")}


def probed_ports(workload: Obj) -> set[int]:
    """The ports the kubelet's network probes (gRPC, HTTP, TCP) connect to."""
    found = set()
    for c in workload["spec"]["template"]["spec"]["containers"]:
        named = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        for probe in PROBES:
            for handler in ("grpc", "httpGet", "tcpSocket"):
                if handler in c.get(probe, {}):
                    port = c[probe][handler]["port"]
                    found.add(named[port] if isinstance(port, str) else int(port))
    return found


def test_nothing_outside_the_cluster_connects_in(overlay: Rendered) -> None:
    # No ipBlock ingress: not from the internet, the store's subnet, nor another node (a
    # private range opened for probes would also open it to host-network pods there).
    cluster = cluster_for(overlay)
    by_name = {e.name: e for e in cluster.endpoints}
    for dst in cluster.endpoints:
        if not dst.deployed:
            continue
        for _, port, proto in dst.ports:
            for src in ("internet", "managed-redis", "other-node"):
                assert not cluster.allowed(by_name[src], dst, port, proto), f"{src} -> {dst.name}:{port}"


def test_kubelet_probes_reach_the_probed_ports_as_the_pods_node(overlay: Rendered) -> None:
    cluster = cluster_for(overlay)
    by_name = {e.name: e for e in cluster.endpoints}
    for workload in overlay.workloads:
        dst = by_name[workload["metadata"]["name"]]
        for port in probed_ports(workload):
            # A port the pod declares, reached by the kubelet on the pod's node only.
            assert port in {p for _, p, _ in dst.ports}, f"{dst.name} probes undeclared port {port}"
            assert cluster.allowed(by_name["kubelet"], dst, port, "TCP")
            assert not cluster.allowed(by_name["other-node"], dst, port, "TCP")


def test_prod_health_port_is_for_the_kubelet_alone(prod: Rendered) -> None:
    # Under TLS the probes ask the plain-text health port. No policy opens it: no pod, of the
    # suite or any other, reaches it (the gRPC ports answer health over TLS to callers).
    cluster = cluster_for(prod)
    health = {
        p["containerPort"]
        for w in prod.workloads
        for c in w["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
        if p.get("name") == "health" and w["metadata"]["labels"].get("app.kubernetes.io/name") == "fanline"
    }
    assert health == {int(prod.config["FANLINE_HEALTH_PORT"])}
    for workload in prod.workloads:
        if workload["metadata"]["labels"].get("app.kubernetes.io/name") == "fanline":
            assert probed_ports(workload) == health, workload["metadata"]["name"]
    reached = {f for f in all_flows(cluster) if f[2] in health}
    assert not reached, diff(reached, set())


def test_prod_grpc_ports_take_calls_from_the_suite_and_labelled_clients_only(prod: Rendered) -> None:
    cluster = cluster_for(prod)
    grpc = {
        (w["metadata"]["name"], p["containerPort"])
        for w in prod.workloads
        for c in w["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
        if p.get("name") == "grpc"
    }
    assert {name for name, _ in grpc} == set(ROLES)
    callers = {src for src, dst, port, _ in all_flows(cluster) if (dst, port) in grpc}
    assert callers == {"post", "timeline", "client", "shop-client"}


def test_every_deployed_pod_is_isolated_both_ways(overlay: Rendered) -> None:
    # Default-deny for everything we run, so a new port is closed until a policy opens it.
    cluster = cluster_for(overlay)
    for workload in overlay.workloads:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        for direction in ("Ingress", "Egress"):
            assert any(
                matches(p["spec"]["podSelector"], labels) and direction in policy_types(p)
                for p in cluster.policies
            ), f"{workload['metadata']['name']} is not isolated for {direction}"


# --- the evaluator itself ---------------------------------------------------------------


def _policy(spec: Obj, namespace: str = "a") -> Obj:
    return {"kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": namespace}, "spec": spec}


WEB = Endpoint("web", "a", {"app": "web"}, (("http", 8080, "TCP"),))
CALLER = Endpoint("caller", "a", {"app": "caller"})
REMOTE = Endpoint("remote", "b", {"app": "caller"})


@pytest.mark.parametrize(
    ("spec", "src", "allowed"),
    [
        ({"podSelector": {}}, CALLER, False),  # Ingress implied, no rules: deny
        ({"podSelector": {"matchLabels": {"app": "db"}}}, CALLER, True),  # selects someone else
        ({"podSelector": {}, "ingress": [{}]}, REMOTE, True),  # one empty rule: allow all
        ({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}, REMOTE, False),
        ({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}, REMOTE, True),
        ({"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]}, CALLER, True),
        ({"podSelector": {}, "ingress": [{"ports": [{"port": 8080, "protocol": "UDP"}]}]}, CALLER, False),
        ({"podSelector": {}, "ingress": [{"ports": [{"port": 8000, "endPort": 8100}]}]}, CALLER, True),
        ({"podSelector": {}, "policyTypes": ["Egress"]}, CALLER, False),  # caller is selected
        (
            {
                "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["caller"]}]},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"podSelector": {}}]}],
            },
            CALLER,
            True,
        ),
    ],
)
def test_evaluator_follows_networkpolicy_semantics(spec: Obj, src: Endpoint, allowed: bool) -> None:
    cluster = Cluster(
        {"a": {"kubernetes.io/metadata.name": "a"}, "b": {"kubernetes.io/metadata.name": "b"}},
        [WEB, CALLER, REMOTE],
        [_policy(spec)],
    )
    assert cluster.allowed(src, WEB, 8080, "TCP") is allowed
