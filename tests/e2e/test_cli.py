"""The console script as users run it: `fanline up` and `fanline demo`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import redis.cluster

from fanline.common.embedded import EmbeddedCluster, free_port
from fanline.launcher import healthy
from tests.conftest import wait_for


def run_up(flags: tuple[str, ...] = (), **env: str) -> tuple[str, dict[str, str]]:
    """`fanline up` until every process is healthy, then SIGTERM: (its output, the addresses)."""
    addrs = {name: f"127.0.0.1:{free_port()}" for name in ("POST", "FANOUT", "TIMELINE", "WORKER")}
    full = {**os.environ, **{f"FANLINE_{k}_ADDR": v for k, v in addrs.items()},
            "FANLINE_LOG_LEVEL": "WARNING", **env}
    if "FANLINE_REDIS_URL" not in env:
        full.pop("FANLINE_REDIS_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "fanline.cli", "up", *flags], env=full,
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
    assert "auth      none: every caller is trusted" in out
    # The embedded store (node or cluster) has a password of its own, never printed.
    assert "store     redis://:***@127.0.0.1:" in out
    assert not any(healthy(a, timeout_s=0.2) for a in addrs.values())


def test_fanline_up_uses_a_cluster_the_caller_started() -> None:
    with EmbeddedCluster(3) as cluster:
        out, _ = run_up(FANLINE_REDIS_MODE="cluster", FANLINE_REDIS_URL=cluster.url)
        # It started no store of its own: the one it was given holds its layout record.
        assert f"store     {cluster.url}\n" in out and "embedded" not in out
        with redis.cluster.RedisCluster.from_url(cluster.url.split(",")[0]) as client:
            assert client.hgetall("fl:layout") == {b"buckets": b"64", b"partitions": b"8"}


@pytest.mark.parametrize(("env", "named"), [
    ({}, "FANLINE_AUTH is not set"),
    ({"FANLINE_AUTH": "jwt"}, "FANLINE_JWT_SECRETS"),
    ({"FANLINE_AUTH": "jwt", "FANLINE_JWT_SECRETS": "k" * 32}, "FANLINE_PAGE_TOKEN_SECRETS"),
])
def test_fanline_serve_refuses_to_run_open_by_omission(env: dict[str, str], named: str) -> None:
    full = {k: v for k, v in os.environ.items() if not k.startswith("FANLINE_")}
    full.update(FANLINE_REDIS_URL="redis://127.0.0.1:1/0", **env)
    result = subprocess.run([sys.executable, "-m", "fanline.cli", "serve", "post"], env=full,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and named in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def run_demo(**extra: str) -> str:
    """`fanline demo` where nothing answers yet, so it starts a suite of its own: its output."""
    env = {**os.environ, **extra}
    for name in ("POST", "FANOUT", "TIMELINE"):
        env[f"FANLINE_{name}_ADDR"] = f"127.0.0.1:{free_port()}"
    env.pop("FANLINE_REDIS_URL", None)
    result = subprocess.run([sys.executable, "-m", "fanline.cli", "demo"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_fanline_demo_shows_the_token_flow_with_jwt() -> None:
    out = run_demo(FANLINE_AUTH="jwt", FANLINE_JWT_SECRETS="d" * 32,
                   FANLINE_PAGE_TOKEN_SECRETS="p" * 32)
    assert "auth: jwt" in out and "authorization: Bearer " in out
    assert "PERMISSION_DENIED" in out
    assert len([line for line in out.splitlines() if line.startswith("  [")]) == 5


def test_fanline_demo_tells_the_story() -> None:
    out = run_demo()
    timeline = [line for line in out.splitlines() if line.startswith("  [")]
    assert len(timeline) == 5
    for line in timeline:  # the ordinary authors come from the inbox, the celebrity is pulled
        assert line.startswith("  [PULL ]") == ("stella" in line), line
    assert "write amplification, push posts" in out and "pull posts: 0.0" in out
    assert "20 writes skipped for inactive followers" in out
    assert "auth: none" in out
