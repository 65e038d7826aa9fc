"""`fanline up` keeps its processes running, keeps its data, and refuses to start on a busy
address or an unreachable store; the services ride out the store going away and coming back.
Real processes, real signals."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fanline.common.embedded import EmbeddedStore, free_port
from fanline.common.server import LIVENESS
from fanline.gen.feed.v1 import fanout_pb2, post_pb2, timeline_pb2
from fanline.launcher import Suite, healthy
from tests.conftest import wait_for
from tests.e2e.helpers import Clients

pytestmark = pytest.mark.e2e


class Up:
    """`fanline up` as a child process, its output collected line by line."""

    def __init__(self, *flags: str, **env: str) -> None:
        self.addrs = {name: f"127.0.0.1:{free_port()}"
                      for name in ("POST", "FANOUT", "TIMELINE", "WORKER")}
        full = {**os.environ, **{f"FANLINE_{k}_ADDR": v for k, v in self.addrs.items()},
                "FANLINE_LOG_LEVEL": "ERROR", **env}
        if "FANLINE_REDIS_URL" not in env:
            full.pop("FANLINE_REDIS_URL", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "fanline.cli", "up", *flags],
                                     env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_serving(self) -> None:
        """Every process healthy, and the banner printed."""
        for addr in self.addrs.values():
            wait_for(lambda a=addr: healthy(a), 30, message=f"{addr} healthy")
        wait_for(lambda: "Ctrl-C stops everything." in self.lines, 10, message="the banner")

    def pid(self, pattern: str) -> int:
        """The pid in the last output line matching `pattern` (with a `pid N` in it)."""
        def found() -> int | None:
            for line in reversed(self.lines):
                if re.search(pattern, line) and (m := re.search(r"pid (\d+)", line)):
                    return int(m.group(1))
            return None

        return int(wait_for(found, 15, message=f"a line matching {pattern!r}"))  # type: ignore[arg-type]

    def clients(self) -> Clients:
        suite = Suite()
        suite.env = {f"FANLINE_{k}_ADDR": v for k, v in self.addrs.items()}
        return Clients.of(suite)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self._reader.join(timeout=5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_up_restarts_a_killed_worker_and_store_and_keeps_the_data(data_dir: Path) -> None:
    up = Up("--data-dir", str(data_dir))
    try:
        up.wait_serving()
        assert f"data      {data_dir}" in up.output
        api = up.clients()
        api.follow("sv-reader", "sv-author")
        api.page("sv-reader")
        first = api.post("sv-author", "before the crashes")
        api.wait_delivered(first.post_id)

        worker = up.pid(r"worker-0 pid")
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: re.search(rf"worker-0 \(pid {worker}\) was killed by SIGKILL; "
                                   r"starting it again", up.output), 10, message="restart line")
        up.pid(r"worker-0 started again")
        store = up.pid(r"^store .* pid")
        os.kill(store, signal.SIGKILL)
        up.pid(r"store started again")
        up.wait_serving()  # everyone healthy again, none of them restarted
        assert "post (pid" not in up.output and "timeline (pid" not in up.output
        # The store came back with its data, and the suite works on the first call.
        assert api.posts.GetPost(post_pb2.GetPostRequest(post_id=first.post_id)).post == first
        second = api.post("sv-author", "after the crashes")
        api.wait_delivered(second.post_id)
        assert api.timeline_ids("sv-reader") == [second.post_id, first.post_id]
    finally:
        assert up.stop() == 0, up.output

    again = Up("--data-dir", str(data_dir))  # the same data, a new suite
    try:
        again.wait_serving()
        api = again.clients()
        assert api.timeline_ids("sv-reader") == [second.post_id, first.post_id]
        assert api.delivery(first.post_id).state == fanout_pb2.DELIVERY_STATE_DELIVERED
    finally:
        assert again.stop() == 0, again.output


def test_up_stops_everything_when_a_process_crash_loops() -> None:
    up = Up("--ephemeral")
    try:
        up.wait_serving()
        assert "data      none" in up.output
        victim = up.pid(r"worker-0 pid")
        for kill in range(5):
            os.kill(victim, signal.SIGKILL)
            if kill == 4:
                break

            def restarted(k: int = kill) -> int | None:
                lines = [line for line in up.lines if "worker-0 started again" in line]
                return int(lines[k].rsplit("pid ", 1)[1].rstrip(")")) if len(lines) > k else None

            victim = int(wait_for(restarted, 20, message="worker-0 started again"))  # type: ignore[arg-type]
        status = up.proc.wait(timeout=30)
    finally:
        up.stop()
    assert status != 0
    assert "crash-looping; stopped everything" in up.output
    assert not any(healthy(a, timeout_s=0.2) for a in up.addrs.values())


def test_up_refuses_a_busy_address_in_seconds_with_one_line() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    busy = f"127.0.0.1:{taken.getsockname()[1]}"
    try:
        started = time.monotonic()
        up = Up("--ephemeral", FANLINE_TIMELINE_ADDR=busy)
        up.addrs["TIMELINE"] = busy
        status = up.proc.wait(timeout=20)
        up.stop()
    finally:
        taken.close()
    assert status == 2 and time.monotonic() - started < 10
    assert up.lines == [f"fanline: {busy} (FANLINE_TIMELINE_ADDR) cannot be used: "
                        "Address already in use"]
    assert not any(healthy(up.addrs[k], timeout_s=0.2) for k in ("POST", "FANOUT"))


def test_up_refuses_an_unreachable_store_in_seconds_with_one_line() -> None:
    url = f"redis://127.0.0.1:{free_port()}"
    started = time.monotonic()
    up = Up(FANLINE_REDIS_URL=url)
    status = up.proc.wait(timeout=30)
    up.stop()
    assert status == 2 and time.monotonic() - started < 15
    assert len(up.lines) == 1 and up.lines[0].startswith(
        f"fanline: cannot use the store at {url} (FANLINE_REDIS_URL): ")
    assert not any(healthy(a, timeout_s=0.2) for a in up.addrs.values())


@pytest.fixture
def lost_store_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    with Suite(workers=1, log_dir=str(tmp_path_factory.mktemp("logs"))) as suite:
        yield suite


def test_services_ride_out_the_store_going_away_and_coming_back_empty(
        lost_store_suite: Suite) -> None:
    suite = lost_store_suite
    store = suite.store
    assert isinstance(store, EmbeddedStore)
    api = Clients.of(suite)
    api.follow("lost-reader", "lost-author")
    api.page("lost-reader")
    api.wait_delivered(api.post("lost-author", "before").post_id)
    names = ["post", "fanout", "timeline", "worker-0"]

    def status(name: str, service: str = "") -> int:
        channel = grpc.insecure_channel(suite.addr_of(name))
        try:
            return int(health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2).status)
        except grpc.RpcError:  # a slow answer on a busy machine: ask again
            return -1
        finally:
            channel.close()

    store.stop()  # a throwaway store: it comes back empty
    wait_for(lambda: all(status(n) == health_pb2.HealthCheckResponse.NOT_SERVING for n in names),
             10, message="every process NOT_SERVING")
    # ... but alive: liveness probes must not restart pods that a restart would not help.
    assert all(status(n, LIVENESS) == health_pb2.HealthCheckResponse.SERVING for n in names)
    calls = [
        lambda: api.post("lost-author", "during"),
        lambda: api.page("lost-reader"),
        lambda: api.follow("lost-x", "lost-y"),
        lambda: api.stats(),
        lambda: api.delivery("376000000000001"),
        lambda: api.posts.GetPost(post_pb2.GetPostRequest(post_id="376000000000001")),
        lambda: api.timeline.GetTimeline(timeline_pb2.GetTimelineRequest(user_id="lost-x")),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() is grpc.StatusCode.UNAVAILABLE, call  # type: ignore[attr-defined]

    store.start()
    wait_for(lambda: all(status(n) == health_pb2.HealthCheckResponse.SERVING for n in names),
             10, message="every process SERVING again")
    # No call fails once the store is back: stale pooled connections are retried, and the
    # empty store's missing consumer groups are made again.
    assert api.stats().queue_depth == 0
    api.follow("lost-reader", "lost-author")
    api.page("lost-reader")
    after = api.post("lost-author", "after")
    assert api.wait_delivered(after.post_id).inbox_writes == 2
    assert api.timeline_ids("lost-reader") == [after.post_id]


def test_a_paused_store_gives_unavailable_in_seconds_and_nothing_hangs(
        lost_store_suite: Suite) -> None:
    # SIGSTOP keeps the store's sockets open and silent: without a reply timeout every call
    # (and every health check) would wait forever on it.
    suite = lost_store_suite
    store = suite.store
    assert isinstance(store, EmbeddedStore) and store.pid
    api = Clients.of(suite)
    api.follow("paused-reader", "paused-author")
    api.page("paused-reader")
    before = api.post("paused-author", "before the pause")
    api.wait_delivered(before.post_id)
    names = ["post", "fanout", "timeline", "worker-0"]
    os.kill(store.pid, signal.SIGSTOP)
    try:
        calls = [
            lambda: api.posts.CreatePost(post_pb2.CreatePostRequest(
                author_id="paused-author", text="during"), timeout=30),
            lambda: api.timeline.GetTimeline(timeline_pb2.GetTimelineRequest(
                user_id="paused-reader"), timeout=30),
            lambda: api.fanout.GetFanoutStats(fanout_pb2.GetFanoutStatsRequest(), timeout=30),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() is grpc.StatusCode.UNAVAILABLE, call  # type: ignore[attr-defined]
            assert time.monotonic() - started < 10, call  # not the caller's 30 s deadline
        wait_for(lambda: not any(healthy(suite.addr_of(n), timeout_s=1) for n in names), 15,
                 message="every process NOT_SERVING while the store is paused")
    finally:
        os.kill(store.pid, signal.SIGCONT)
    wait_for(lambda: all(healthy(suite.addr_of(n), timeout_s=1) for n in names), 15,
             message="every process SERVING again")
    after = api.post("paused-author", "after the pause")
    api.wait_delivered(after.post_id)
    assert api.timeline_ids("paused-reader")[:2] == [after.post_id, before.post_id]
