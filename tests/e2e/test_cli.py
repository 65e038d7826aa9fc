"""The console script as users run it: `fanline up` and `fanline demo`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import redis.cluster

from services.common.embedded import EmbeddedCluster, free_port
from services.launcher import healthy
from tests.conftest import wait_for


def run_up(flags: tuple[str, ...] = (), **env: str) -> tuple[str, dict[str, str]]:
    """`fanline up` until every process is healthy, then SIGTERM: (its output, the addresses)."""
    addrs = {name: f"127.0.0.1:{free_port()}" for name in ("POST", "FANOUT", "TIMELINE", "WORKER")}
    full = {**os.environ, **{f"FANLINE_{k}_ADDR": v for k, v in addrs.items()},
            "FANLINE_LOG_LEVEL": "WARNING", **env}
    if "FANLINE_REDIS_URL" not in env:
        full.pop("FANLINE_REDIS_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "up", *flags], env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for addr in addrs.values():
            wait_for(lambda a=addr: healthy(a), 30, message=f"{addr} healthy")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
    return out, addrs


@pytest.mark.parametrize(("flags", "store"), [((), "(embedded)"),
                                             (("--cluster", "3"), "(embedded cluster: 3 masters)")])
def test_fanline_up_serves_everything_and_stops_cleanly_on_sigterm(flags: tuple[str, ...],
                                                                   store: str) -> None:
    out, addrs = run_up(flags)
    assert store in out and addrs["TIMELINE"] in out and "stopped" in out
    assert not any(healthy(a, timeout_s=0.2) for a in addrs.values())


def test_fanline_up_uses_a_cluster_the_caller_started() -> None:
    with EmbeddedCluster(3) as cluster:
        out, _ = run_up(FANLINE_REDIS_MODE="cluster", FANLINE_REDIS_URL=cluster.url)
        # It started no store of its own: the one it was given holds its layout record.
        assert f"store     {cluster.url}\n" in out and "embedded" not in out
        with redis.cluster.RedisCluster.from_url(cluster.url.split(",")[0]) as client:
            assert client.hgetall("fl:layout") == {b"buckets": b"64", b"partitions": b"8"}


def test_fanline_demo_tells_the_story() -> None:
    env = {**os.environ}
    for name in ("POST", "FANOUT", "TIMELINE"):  # nothing answers here: the demo starts a suite
        env[f"FANLINE_{name}_ADDR"] = f"127.0.0.1:{free_port()}"
    env.pop("FANLINE_REDIS_URL", None)
    result = subprocess.run([sys.executable, "-m", "services.cli", "demo"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    timeline = [line for line in out.splitlines() if line.startswith("  [")]
    assert len(timeline) == 5
    for line in timeline:  # the ordinary authors come from the inbox, the celebrity is pulled
        assert line.startswith("  [PULL ]") == ("stella" in line), line
    assert "write amplification, push posts" in out and "pull posts: 0.0" in out
    assert "20 writes skipped for inactive followers" in out
