"""EmbeddedCluster against real valkey-server processes: slot layout, routing through a cluster
client, clean shutdown, and failover of a killed master to its replica."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import redis
from redis.cluster import RedisCluster

from fanline.common.embedded import CLUSTER_SLOTS, EmbeddedCluster


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _keys_by_master(client: RedisCluster, masters: int) -> dict[int, str]:
    """One key per master port, found by asking the client where each candidate key lands."""
    found: dict[int, str] = {}
    candidates: Iterator[str] = (f"key:{i}" for i in range(10_000))
    while len(found) < masters:
        key = next(candidates)
        found.setdefault(client.get_node_from_key(key).port, key)
    return found


def test_three_masters_cover_every_slot_and_stop_cleanly() -> None:
    cluster = EmbeddedCluster(masters=3)
    with cluster:
        masters = cluster.masters()
        assert masters == sorted(cluster.ports)
        assert len(cluster.url.split(",")) == 3
        pids = [cluster.pid(port) for port in cluster.ports]
        assert all(pids)

        with redis.Redis(port=cluster.ports[0], decode_responses=True) as node:
            info = node.cluster("INFO")
            assert info["cluster_state"] == "ok"
            assert int(info["cluster_slots_ok"]) == CLUSTER_SLOTS
        # The standard layout: master i owns [i*16384//3, (i+1)*16384//3 - 1].
        expected = [(i * CLUSTER_SLOTS // 3, (i + 1) * CLUSTER_SLOTS // 3 - 1) for i in range(3)]

        with RedisCluster.from_url(cluster.url.split(",")[0], decode_responses=True) as client:
            ranges = {span: int(owner["primary"][1]) for span, owner in client.cluster_slots().items()}
            assert dict(zip(expected, cluster.ports, strict=True)) == ranges

            keys = _keys_by_master(client, 3)
            assert sorted(keys) == masters
            for port, key in keys.items():
                assert client.set(key, f"value-{port}")
                assert client.get(key) == f"value-{port}"
                # The key really lives on that master: a plain client would get MOVED elsewhere.
                with redis.Redis(port=port, decode_responses=True) as direct:
                    assert direct.get(key) == f"value-{port}"

    assert cluster.ports == []
    assert not [pid for pid in pids if pid and _running(pid)]
    assert not [port for port in masters if _listening(port)]


def test_killed_master_fails_over_to_its_replica() -> None:
    with EmbeddedCluster(masters=3, replicas=1) as cluster:
        victim = cluster.ports[0]
        (replica,) = cluster.replicas_of(victim)
        survivor = cluster.ports[1]

        with RedisCluster(host="127.0.0.1", port=survivor, decode_responses=True) as client:
            key = _keys_by_master(client, 3)[victim]
        # Write on the victim and wait for the replica's ack on the same connection, so the
        # value is known to be on the replica before the master dies.
        with redis.Redis(port=victim, decode_responses=True, single_connection_client=True) as direct:
            assert direct.set(key, "survives")
            assert direct.execute_command("WAIT", 1, 1000) == 1

        cluster.kill(victim)
        assert cluster.pid(victim) is None
        cluster.wait_healthy(timeout_s=30)

        # The cluster itself promoted the replica; the dead master is no longer listed.
        assert cluster.masters() == sorted([replica, *cluster.ports[1:3]])
        with RedisCluster(host="127.0.0.1", port=survivor, decode_responses=True) as client:
            assert client.get_node_from_key(key).port == replica
            assert client.get(key) == "survives"
