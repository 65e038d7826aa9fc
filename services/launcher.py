"""Runs the whole suite as separate processes: `fanline up`, `fanline demo`, tests, bench.

One store (an embedded Valkey node or cluster, unless FANLINE_REDIS_URL is set), the post,
fan-out and timeline services, and fan-out workers, each its own process started with
`fanline serve ROLE`.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fanline.common.embedded import EmbeddedCluster, EmbeddedStore, free_port
from fanline.common.tls import TlsFiles

ROLES = ("post", "fanout", "timeline")


def open_channel(addr: str, tls: TlsFiles | None = None) -> grpc.Channel:
    """A blocking channel to a suite process: TLS (mutual with a CA) when the suite uses it."""
    if tls is None:
        return grpc.insecure_channel(addr)
    return grpc.secure_channel(addr, tls.channel_credentials())


def healthy(addr: str, timeout_s: float = 0.5, tls: TlsFiles | None = None) -> bool:
    try:
        with open_channel(addr, tls) as channel:
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
    data_dir: str | None = None  # the embedded node keeps its data here (None: throwaway)
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    store: EmbeddedStore | EmbeddedCluster | None = None
    tls: TlsFiles | None = None  # the suite's certificates, when it uses TLS
    _planned: dict[str, str] = field(default_factory=dict)

    def _address(self, name: str, default_port: int) -> str:
        given = self.extra_env.get(name) or os.environ.get(name)
        if given:
            return given
        return f"127.0.0.1:{free_port() if self.free_ports else default_port}"

    def addresses(self) -> dict[str, str]:
        """What each process will listen on, by the setting that names it (and a worker's);
        chosen once."""
        if self._planned:
            return self._planned
        out = {name: self._address(name, port) for name, port in
               (("FANLINE_POST_ADDR", 50051), ("FANLINE_FANOUT_ADDR", 50052),
                ("FANLINE_TIMELINE_ADDR", 50053))}
        if not self.free_ports:
            host, _, port = self._address("FANLINE_WORKER_ADDR", 50054).rpartition(":")
            out.update((f"FANLINE_WORKER_ADDR (worker {i})", f"{host}:{int(port) + i}")
                       for i in range(self.workers))
        self._planned = out
        return out

    def start(self, timeout_s: float = 30.0) -> Suite:
        env = dict(os.environ)
        env.update(self.extra_env)
        if not env.get("FANLINE_AUTH"):
            env["FANLINE_AUTH"] = "none"  # a local suite trusts its callers unless told otherwise
        env.update({k: v for k, v in self.addresses().items() if k.startswith("FANLINE_")
                    and " " not in k})
        self.env = env
        self.tls = TlsFiles.read(env.get("FANLINE_TLS_CERT", ""), env.get("FANLINE_TLS_KEY", ""),
                                 env.get("FANLINE_TLS_CA", ""))
        try:
            if not env.get("FANLINE_REDIS_URL"):
                # A password of its own each start: other local users and processes cannot
                # use the store; the suite's processes get it in the URL.
                password = secrets.token_urlsafe(24)
                if self.cluster_masters:
                    self.store = EmbeddedCluster(self.cluster_masters, self.cluster_replicas,
                                                 password=password).start()
                    env["FANLINE_REDIS_MODE"] = "cluster"
                else:
                    self.store = EmbeddedStore(data_dir=self.data_dir, password=password).start()
                env["FANLINE_REDIS_URL"] = self.store.url
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

    def _spawn(self, name: str, role: str, env: Mapping[str, str],
               exact_env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """`exact_env`: the whole environment (a process started again gets its old one)."""
        if exact_env is not None:
            proc_env = dict(exact_env)
        else:
            proc_env = {**self.env, **env, "OTEL_SERVICE_NAME": self.env.get(
                f"OTEL_SERVICE_NAME_{role.upper()}", f"fanline-{role}")}
            metrics_port = int(self.env.get("FANLINE_METRICS_PORT") or 0)
            if metrics_port:  # one scrape port per process: FANLINE_METRICS_PORT, +1, +2, ...
                proc_env["FANLINE_METRICS_PORT"] = str(metrics_port + len(self.procs))
        out = None
        if self.log_dir:
            out = open(os.path.join(self.log_dir, f"{name}.log"), "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "fanline.cli", "serve", role],
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
        """Start a stopped process again, as it was (same addresses and settings)."""
        role = "worker" if name.startswith("worker") else name
        old = self.procs.get(name)
        return self._spawn(name, role, {},
                           getattr(old, "fanline_env", None) if old is not None else None)

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
                if healthy(self.addr_of(name), tls=self.tls):
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


def describe_exit(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


@dataclass
class _Restarts:
    times: deque[float] = field(default_factory=deque)
    due: float | None = None  # when to start it again (None: running)
    last_status: int = 0


class Supervisor:
    """Keeps a running Suite's processes (and its embedded single-node store) up.

    A process that exits is started again after a backoff (0.5 s, doubling up to 8 s), with
    one line saying which, its pid and how it ended; the others keep serving. One that exits
    MAX_RESTARTS times within WINDOW_S is crash-looping: `run` returns the reason, and the
    caller stops everything."""

    MAX_RESTARTS = 5
    WINDOW_S = 60.0
    FIRST_BACKOFF_S = 0.5
    MAX_BACKOFF_S = 8.0
    POLL_S = 0.2

    def __init__(self, suite: Suite, say: Callable[[str], None]) -> None:
        self._suite = suite
        self._say = say
        self._restarts: dict[str, _Restarts] = {}

    def run(self, stopping: Callable[[], bool]) -> str | None:
        """Supervise until `stopping()`; returns None then, or why it gave up."""
        while not stopping():
            now = time.monotonic()
            for name, status, pid in self._exited():
                reason = self._exited_now(name, status, pid, now)
                if reason:
                    return reason
            for name, state in self._restarts.items():
                if state.due is not None and now >= state.due:
                    state.due = None
                    self._start_again(name)
            time.sleep(self.POLL_S)
        return None

    def _exited(self) -> list[tuple[str, int, int | None]]:
        out: list[tuple[str, int, int | None]] = []
        store = self._suite.store
        if isinstance(store, EmbeddedStore) and self._pending("store") is None:
            status = store.exit_status()
            if status is not None:
                out.append(("store", status, store.pid))
        for name, proc in self._suite.procs.items():
            if self._pending(name) is None and proc.poll() is not None:
                out.append((name, proc.returncode, proc.pid))
        return out

    def _pending(self, name: str) -> float | None:
        state = self._restarts.get(name)
        return state.due if state else None

    def _exited_now(self, name: str, status: int, pid: int | None, now: float) -> str | None:
        state = self._restarts.setdefault(name, _Restarts())
        while state.times and now - state.times[0] > self.WINDOW_S:
            state.times.popleft()
        if len(state.times) >= self.MAX_RESTARTS - 1:
            return (f"{name} (pid {pid}) {describe_exit(status)}, its {len(state.times) + 1}th "
                    f"exit within {self.WINDOW_S:.0f} s: it is crash-looping")
        backoff = min(self.MAX_BACKOFF_S, self.FIRST_BACKOFF_S * 2 ** len(state.times))
        state.times.append(now)
        state.due = now + backoff
        state.last_status = status
        self._say(f"{name} (pid {pid}) {describe_exit(status)}; starting it again in "
                  f"{backoff:.1f} s")
        return None

    def _start_again(self, name: str) -> None:
        try:
            if name == "store":
                assert isinstance(self._suite.store, EmbeddedStore)
                self._suite.store.start()
                pid = self._suite.store.pid
            else:
                pid = self._suite.respawn(name).pid
        except (OSError, RuntimeError, TimeoutError) as exc:
            self._say(f"{name} did not start again ({exc}); trying later")
            self._restarts[name].due = time.monotonic() + self.MAX_BACKOFF_S
            return
        self._say(f"{name} started again (pid {pid})")
