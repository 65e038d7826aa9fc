"""Runs the whole suite as separate processes: `fanline up`, `fanline demo`, tests, bench.

One store (an embedded Valkey node or cluster, unless FANLINE_REDIS_URL is set), the post,
fan-out and timeline services, and fan-out workers, each its own process started with
`fanline serve ROLE`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.embedded import EmbeddedCluster, EmbeddedStore, free_port

ROLES = ("post", "fanout", "timeline")


def healthy(addr: str, timeout_s: float = 0.5) -> bool:
    try:
        with grpc.insecure_channel(addr) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout_s
            )
            return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


@dataclass
class Suite:
    """Start with `start()`; `env` holds the addresses every process was given."""

    workers: int = 1
    extra_env: Mapping[str, str] = field(default_factory=dict)
    free_ports: bool = True
    log_dir: str | None = None
    cluster_masters: int = 0  # embedded store: 0 = one node, N = a cluster of N masters
    cluster_replicas: int = 0  # replicas per master of an embedded cluster
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    store: EmbeddedStore | EmbeddedCluster | None = None

    def _address(self, name: str, default_port: int) -> str:
        given = self.extra_env.get(name) or os.environ.get(name)
        if given:
            return given
        return f"127.0.0.1:{free_port() if self.free_ports else default_port}"

    def start(self, timeout_s: float = 30.0) -> Suite:
        env = dict(os.environ)
        env.update(self.extra_env)
        if not env.get("FANLINE_REDIS_URL"):
            if self.cluster_masters:
                self.store = EmbeddedCluster(self.cluster_masters, self.cluster_replicas).start()
                env["FANLINE_REDIS_MODE"] = "cluster"
            else:
                self.store = EmbeddedStore().start()
            env["FANLINE_REDIS_URL"] = self.store.url
        env["FANLINE_POST_ADDR"] = self._address("FANLINE_POST_ADDR", 50051)
        env["FANLINE_FANOUT_ADDR"] = self._address("FANLINE_FANOUT_ADDR", 50052)
        env["FANLINE_TIMELINE_ADDR"] = self._address("FANLINE_TIMELINE_ADDR", 50053)
        self.env = env
        try:
            for role in ROLES:
                self._spawn(role, role, {})
            for index in range(self.workers):
                self.add_worker(f"worker-{index}")
            self.wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        """Another worker process; its health endpoint is on a free port, or with fixed ports
        on FANLINE_WORKER_ADDR's port + the number of workers already running."""
        if self.free_ports:
            addr = f"127.0.0.1:{free_port()}"
        else:
            host, _, port = self._address("FANLINE_WORKER_ADDR", 50054).rpartition(":")
            index = len([n for n in self.procs if n.startswith("worker")])
            addr = f"{host}:{int(port) + index}"
        return self._spawn(name, "worker", {"FANLINE_WORKER_ADDR": addr, **env})

    def _spawn(self, name: str, role: str, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        proc_env = {**self.env, **env, "OTEL_SERVICE_NAME": self.env.get(
            f"OTEL_SERVICE_NAME_{role.upper()}", f"fanline-{role}")}
        metrics_port = int(self.env.get("FANLINE_METRICS_PORT") or 0)
        if metrics_port:  # one scrape port per process: FANLINE_METRICS_PORT, +1, +2, ...
            proc_env["FANLINE_METRICS_PORT"] = str(metrics_port + len(self.procs))
        out = None
        if self.log_dir:
            out = open(os.path.join(self.log_dir, f"{name}.log"), "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", role],
            env=proc_env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
        )
        if out:
            out.close()  # the child holds its own descriptor
        self.procs[name] = proc
        proc.fanline_env = proc_env  # type: ignore[attr-defined]
        return proc

    def respawn(self, name: str) -> subprocess.Popen[bytes]:
        """Start a stopped service again, on the same address."""
        role = "worker" if name.startswith("worker") else name
        return self._spawn(name, role, {})

    def addr_of(self, name: str) -> str:
        proc = self.procs[name]
        env: dict[str, str] = proc.fanline_env  # type: ignore[attr-defined]
        role = "worker" if name.startswith("worker") else name
        return env[f"FANLINE_{role.upper()}_ADDR"]

    def wait_healthy(self, timeout_s: float = 30.0, names: list[str] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        waiting = list(names or self.procs)
        while waiting:
            for name in list(waiting):
                proc = self.procs[name]
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode} during start-up")
                if healthy(self.addr_of(name)):
                    waiting.remove(name)
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(f"not healthy after {timeout_s}s: {', '.join(waiting)}")
            if waiting:
                time.sleep(0.05)

    @property
    def post_addr(self) -> str:
        return self.env["FANLINE_POST_ADDR"]

    @property
    def fanout_addr(self) -> str:
        return self.env["FANLINE_FANOUT_ADDR"]

    @property
    def timeline_addr(self) -> str:
        return self.env["FANLINE_TIMELINE_ADDR"]

    @property
    def redis_url(self) -> str:
        return self.env["FANLINE_REDIS_URL"]

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 15) -> int:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name in list(self.procs):
            self.stop_process(name)
        if self.store:
            self.store.stop()
            self.store = None

    def __enter__(self) -> Suite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
