"""`fanline bench chaos`: random SIGKILLs of workers, services and the store under load.

A supervised suite (as `fanline up` runs it: two workers, an embedded store keeping its data
in an append-only file) serves a steady stream of posts and timeline reads while a seeded
plan kills one process every few seconds with SIGKILL: a worker, the post, fan-out or
timeline service, or the store itself. The supervisor starts each one again.

Posts are written the way a careful client writes them: each with a request id, retried with
the same id on UNAVAILABLE or DEADLINE_EXCEEDED until acknowledged. When the plan has run,
the kills stop, fan-out drains, and every acknowledged post is checked against the graph:

- lost: an acknowledged post missing from the store, or missing from a follower's inbox;
- duplicated: a post stored twice for one request id, or an inbox write counted twice;
- statuses: every status callers saw (UNAVAILABLE is expected while a process is down;
  UNKNOWN or INTERNAL never);
- recovery: from each kill to the process serving again, and to the first acknowledged post
  after a store kill; delivery lag (post creation to its last inbox write) p50/p99/max.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fanline.bench.clients import Stubs
from fanline.bench.graph import Graph
from fanline.bench.load import load_store
from fanline.bench.stats import percentile
from fanline.bench.suite import suite_env, suite_store
from fanline.common.embedded import EmbeddedStore
from fanline.common.store import Store
from fanline.gen.feed.v1 import fanout_pb2, post_pb2, timeline_pb2
from fanline.launcher import Suite, Supervisor

VICTIMS = ("worker-0", "worker-1", "post", "fanout", "timeline", "store")
RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
THRESHOLD = 1000
WINDOW_S = 60.0
MAX_KILLS_PER_WINDOW = 3  # fewer than the supervisor's crash-loop limit (5 exits in 60 s)
GIVE_UP_S = 60.0  # a post not acknowledged after this long counts as failed


def kill_plan(seconds: float, seed: int, every_s: tuple[float, float] = (4.0, 8.0),
              victims: Sequence[str] = VICTIMS) -> list[tuple[float, str]]:
    """(seconds from the start, victim), in time order. No victim is killed more than
    MAX_KILLS_PER_WINDOW times in any WINDOW_S: more would be a crash loop, which the
    supervisor answers by stopping the suite, and that is not what this measures."""
    rng = random.Random(seed)
    plan: list[tuple[float, str]] = []
    at = rng.uniform(*every_s)
    while at < seconds:
        recent = Counter(v for t, v in plan if at - t < WINDOW_S)
        allowed = [v for v in victims if recent[v] < MAX_KILLS_PER_WINDOW]
        if allowed:
            plan.append((at, rng.choice(allowed)))
        at += rng.uniform(*every_s)
    return plan


def chaos_graph(authors: int = 40, readers: int = 3000, seed: int = 1) -> Graph:
    """Authors with 50 to 900 followers each (all pushed to, under the 1,000 threshold) and
    one pulled celebrity everyone follows, so reads merge both paths."""
    rng = random.Random(seed)
    author_ids = [f"ca{i:03d}" for i in range(authors)]
    reader_ids = [f"cr{i:05d}" for i in range(readers)]
    following: dict[str, list[str]] = {a: [] for a in [*author_ids, *reader_ids, "cceleb"]}
    for author in author_ids:
        for reader in rng.sample(reader_ids, rng.randint(50, 900)):
            following[reader].append(author)
    for reader in reader_ids[:THRESHOLD + 200]:
        following[reader].append("cceleb")
    return Graph("chaos", author_ids, ["cceleb"], reader_ids, following)


@dataclass
class Kill:
    at_s: float
    victim: str
    pid: int
    back_s: float | None = None  # until it serves again (the store: answers PING)
    writes_back_s: float | None = None  # store kills: until the next post is acknowledged


@dataclass
class ChaosResult:
    seconds: float
    kills: list[Kill] = field(default_factory=list)
    posts_acked: int = 0
    posts_failed: int = 0  # not acknowledged within GIVE_UP_S
    post_statuses: Counter[str] = field(default_factory=Counter)  # every attempt's status
    read_statuses: Counter[str] = field(default_factory=Counter)
    expected_entries: int = 0
    lost_posts: int = 0
    lost_entries: int = 0
    duplicated_posts: int = 0
    duplicated_entries: int = 0
    undelivered: int = 0
    lag_ms: list[int] = field(default_factory=list, repr=False)
    stopped: str | None = None  # the supervisor gave up (a crash loop)

    @property
    def bad_statuses(self) -> int:
        return sum(n for s in (self.post_statuses, self.read_statuses)
                   for code, n in s.items() if code in ("UNKNOWN", "INTERNAL"))

    @property
    def passed(self) -> bool:
        return (not self.stopped and self.posts_failed == 0 and self.lost_posts == 0
                and self.lost_entries == 0 and self.duplicated_posts == 0
                and self.duplicated_entries == 0 and self.undelivered == 0
                and self.bad_statuses == 0)

    def recovery(self, victim_kind: str) -> list[float]:
        return [k.back_s for k in self.kills if k.back_s is not None
                and kind(k.victim) == victim_kind]

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out.pop("lag_ms")
        # asdict rebuilds a Counter from (key, value) pairs, counting the pairs
        out.update(post_statuses=dict(self.post_statuses),
                   read_statuses=dict(self.read_statuses))
        lag = self.lag_ms or [0]
        out.update(passed=self.passed, lag_p50_ms=percentile(lag, 50),
                   lag_p99_ms=percentile(lag, 99), lag_max_ms=max(lag))
        return out


def kind(victim: str) -> str:
    return "worker" if victim.startswith("worker") else victim


class Chaos:
    def __init__(self, suite: Suite, graph: Graph, stubs: Stubs, seconds: float,
                 post_rate: float, read_rate: float, seed: int, progress: bool,
                 every_s: tuple[float, float] = (4.0, 8.0)) -> None:
        self.suite = suite
        self.graph = graph
        self.stubs = stubs
        self.seconds = seconds
        self.post_rate = post_rate
        self.read_rate = read_rate
        self.seed = seed
        self.progress = progress
        self.every_s = every_s
        self.result = ChaosResult(seconds)
        self.acked: dict[str, str] = {}  # post id -> author
        self.acked_at: list[float] = []
        self._n = 0
        self._start = 0.0
        self._watchers: list[asyncio.Task[None]] = []

    def say(self, line: str) -> None:
        if self.progress:
            print(f"  {time.monotonic() - self._start:6.1f} s  {line}", flush=True)

    async def run(self) -> ChaosResult:
        self._start = time.monotonic()
        end = self._start + self.seconds
        posting = asyncio.create_task(self._stream(end, self.post_rate, self._post))
        reading = asyncio.create_task(self._stream(end, self.read_rate, self._read))
        for at, victim in kill_plan(self.seconds, self.seed, self.every_s):
            delay = self._start + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # the plan's schedule, not a wait on state
            await self._kill(victim)
        await asyncio.gather(posting, reading, *self._watchers)
        return self.result

    async def _stream(self, end: float, rate: float, call: object) -> None:
        rng = random.Random(self.seed + int(rate))
        tasks: set[asyncio.Task[None]] = set()
        next_at = time.monotonic()
        while True:
            next_at += rng.expovariate(rate)
            if next_at >= end:
                break
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # the arrival schedule (load shape)
            task = asyncio.create_task(call())  # type: ignore[operator]
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)

    async def _post(self) -> None:
        self._n += 1
        n = self._n
        author = random.Random(n).choice(self.graph.users)
        request = post_pb2.CreatePostRequest(author_id=author, text=f"chaos {n}",
                                             request_id=f"chaos-{self.seed}-{n}")
        give_up = time.monotonic() + GIVE_UP_S
        while True:
            try:
                reply = await self.stubs.post_stub(n).CreatePost(request, timeout=5)
            except grpc.aio.AioRpcError as exc:
                self.result.post_statuses[exc.code().name] += 1
                if exc.code() not in RETRIED or time.monotonic() > give_up:
                    self.result.posts_failed += 1
                    return
                await asyncio.sleep(0.2)  # a client's retry pause
                continue
            self.result.post_statuses["OK"] += 1
            self.acked[reply.post.post_id] = author
            self.acked_at.append(time.monotonic())
            return

    async def _read(self) -> None:
        self._n += 1
        n = self._n
        reader = random.Random(n).choice(self.graph.audience)
        try:
            await self.stubs.timeline_stub(n).GetTimeline(
                timeline_pb2.GetTimelineRequest(user_id=reader, page_size=20), timeout=2)
            self.result.read_statuses["OK"] += 1
        except grpc.aio.AioRpcError as exc:
            self.result.read_statuses[exc.code().name] += 1

    def _pid(self, victim: str) -> int | None:
        if victim == "store":
            store = self.suite.store
            return store.pid if isinstance(store, EmbeddedStore) else None
        proc = self.suite.procs.get(victim)
        return proc.pid if proc is not None and proc.poll() is None else None

    async def _kill(self, victim: str) -> None:
        pid = self._pid(victim)
        if pid is None or not await self._serving(victim):
            self.say(f"{victim} is still starting after its last kill: skipped")
            return
        os.kill(pid, signal.SIGKILL)
        kill = Kill(round(time.monotonic() - self._start, 2), victim, pid)
        self.result.kills.append(kill)
        self.say(f"killed {victim} (pid {pid})")
        self._watchers.append(asyncio.create_task(self._watch(kill, time.monotonic())))

    async def _watch(self, kill: Kill, killed: float) -> None:
        acked_before = len(self.acked_at)
        while time.monotonic() - killed < 120:
            await asyncio.sleep(0.05)  # polling for recovery, measured to 50 ms
            if kill.back_s is None and self._pid(kill.victim) not in (None, kill.pid) \
                    and await self._serving(kill.victim):
                kill.back_s = round(time.monotonic() - killed, 2)
            if kill.victim == "store" and kill.writes_back_s is None and \
                    len(self.acked_at) > acked_before and self.acked_at[-1] > killed:
                kill.writes_back_s = round(
                    min(t for t in self.acked_at[acked_before:] if t > killed) - killed, 2)
            if kill.back_s is not None and (kill.victim != "store"
                                            or kill.writes_back_s is not None):
                self.say(f"{kill.victim} back after {kill.back_s:.2f} s"
                         + (f", posts acknowledged again after {kill.writes_back_s:.2f} s"
                            if kill.writes_back_s is not None else ""))
                return

    async def _serving(self, victim: str) -> bool:
        if victim == "store":
            store = self.suite.store
            return isinstance(store, EmbeddedStore) and await asyncio.to_thread(store._ping)
        try:
            async with grpc.aio.insecure_channel(self.suite.addr_of(victim)) as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=0.5)
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
        except grpc.aio.AioRpcError:
            return False


async def stored_posts(store: Store, authors: Iterable[str]) -> dict[str, list[str]]:
    return {a: [str(i) for i in await store.posts.author_ids(a, None, 10_000)]
            for a in authors}


async def verify(store: Store, stubs: Stubs, graph: Graph, acked: dict[str, str],
                 seeded: dict[str, list[str]], result: ChaosResult,
                 drain_s: float = 120) -> None:
    """Every acknowledged post stored once and in each follower's inbox once.

    `seeded`: each author's posts stored before the run.
    """
    followers = graph.followers_of()
    deadline = time.monotonic() + drain_s
    replies: dict[str, fanout_pb2.GetDeliveryResponse] = {}
    while len(replies) < len(acked) and time.monotonic() < deadline:
        for post_id in [p for p in acked if p not in replies]:
            try:
                reply = await stubs.delivery(post_id)
            except grpc.aio.AioRpcError:
                continue
            if reply.state in (fanout_pb2.DELIVERY_STATE_DELIVERED,
                               fanout_pb2.DELIVERY_STATE_FAILED):
                replies[post_id] = reply
        if len(replies) < len(acked):
            await asyncio.sleep(0.5)  # polling the drain
    result.undelivered = len(acked) - sum(
        1 for r in replies.values() if r.state == fanout_pb2.DELIVERY_STATE_DELIVERED)
    result.lag_ms = sorted(r.lag_ms for r in replies.values())
    by_author: dict[str, set[str]] = {}
    for post_id, author in acked.items():
        by_author.setdefault(author, set()).add(post_id)
    for author, ids in by_author.items():
        before = set(seeded.get(author, ()))
        stored = [i for i in (await stored_posts(store, [author]))[author] if i not in before]
        result.lost_posts += len(ids - set(stored))
        # Posts by this author the run did not acknowledge: a retry stored a second copy.
        result.duplicated_posts += len(set(stored) - ids) + len(stored) - len(set(stored))
        expected = len(followers[author]) + 1  # its followers' inboxes and its own
        for post_id in ids:
            reply = replies.get(post_id)
            if reply is not None:
                result.duplicated_entries += max(0, reply.inbox_writes - expected)
    inbox_of: dict[str, set[str]] = {}
    for author, ids in by_author.items():
        for owner in [author, *followers[author]]:
            if owner not in inbox_of:
                inbox_of[owner] = {str(i) for i in await store.inboxes.all_ids(owner)}
            result.expected_entries += len(ids)
            result.lost_entries += len(ids - inbox_of[owner])


def run_chaos(minutes: float = 3.0, post_rate: float = 8.0, read_rate: float = 40.0,
              seed: int = 1, out_dir: str | Path = "bench/out", progress: bool = True,
              every_s: tuple[float, float] = (4.0, 8.0)) -> ChaosResult:
    """`every_s`: the range the pause between two kills is drawn from."""
    out = Path(out_dir)
    logs = out / "logs" / "chaos"
    logs.mkdir(parents=True, exist_ok=True)
    graph = chaos_graph(seed=seed)
    env = suite_env(THRESHOLD, {"FANLINE_FANOUT_BATCH_SIZE": "100"})
    with tempfile.TemporaryDirectory(prefix="fanline-chaos-") as data:
        suite = Suite(workers=2, extra_env=env, log_dir=str(logs), data_dir=data)
        suite.start(timeout_s=60)
        stopping = threading.Event()
        messages: list[str] = []
        supervisor = Supervisor(suite, messages.append)
        stopped: list[str | None] = []
        watcher = threading.Thread(
            target=lambda: stopped.append(supervisor.run(stopping.is_set)), daemon=True)
        try:
            async def go() -> ChaosResult:
                store = await suite_store(suite)
                stubs = Stubs.connect(suite.env["FANLINE_POST_ADDR"],
                                      suite.env["FANLINE_FANOUT_ADDR"],
                                      suite.env["FANLINE_TIMELINE_ADDR"])
                try:
                    await load_store(store, graph, THRESHOLD, 1, 800, seed)
                    seeded = await stored_posts(store, graph.users)
                    watcher.start()
                    chaos = Chaos(suite, graph, stubs, minutes * 60, post_rate, read_rate,
                                  seed, progress, every_s)
                    result = await chaos.run()
                    if progress:
                        print(f"kills done; {len(chaos.acked)} posts acknowledged; verifying",
                              flush=True)
                    await verify(store, stubs, graph, chaos.acked, seeded, result)
                    return result
                finally:
                    await stubs.close()
                    await store.close()

            result = asyncio.run(go())
        finally:
            stopping.set()
            if watcher.is_alive():
                watcher.join()
            suite.stop()
        result.stopped = stopped[0] if stopped else None
        result.posts_acked = result.post_statuses["OK"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "chaos.json").write_text(json.dumps(result.as_dict(), indent=1))
    return result


def _range(values: list[float]) -> str:
    if not values:
        return "-"
    return f"median {percentile(values, 50):.2f} s, max {max(values):.2f} s ({len(values)} kills)"


def format_chaos(r: ChaosResult) -> str:
    lag = r.lag_ms or [0]
    store_writes = [k.writes_back_s for k in r.kills if k.writes_back_s is not None]
    kills = Counter(kind(k.victim) for k in r.kills)
    lines = [
        f"chaos: {r.seconds / 60:.1f} minutes, {len(r.kills)} SIGKILLs "
        f"({', '.join(f'{v} {n}' for v, n in sorted(kills.items()))})",
        f"  posts acknowledged {r.posts_acked:,}, not acknowledged {r.posts_failed}; "
        f"statuses seen by posting clients: {dict(r.post_statuses)}",
        f"  timeline reads: {dict(r.read_statuses)}",
        f"  lost: {r.lost_posts} posts, {r.lost_entries} of {r.expected_entries:,} inbox "
        f"entries; duplicated: {r.duplicated_posts} posts, {r.duplicated_entries} inbox writes; "
        f"undelivered {r.undelivered}",
        f"  delivery lag (creation to last inbox write): p50 {percentile(lag, 50):,.0f} ms, "
        f"p99 {percentile(lag, 99):,.0f} ms, max {max(lag):,} ms",
        *(f"  {v} back: {_range(r.recovery(v))}"
          for v in ("worker", "post", "fanout", "timeline", "store")),
        f"  posts acknowledged again after a store kill: {_range(store_writes)}",
        f"  {'PASS' if r.passed else 'FAIL'}" + (f" (suite stopped: {r.stopped})"
                                                  if r.stopped else ""),
    ]
    return "\n".join(lines)
