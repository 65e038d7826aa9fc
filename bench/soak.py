"""`fanline bench soak --minutes N`: a long mixed load at a steady rate, minute by minute.

A suite (embedded store, the three services, one worker) is loaded with a synthetic graph
through the store, at the steady state: every author already has the history a follow
backfills (SEED_POSTS_PER_AUTHOR) and every inbox is full, so the work per call does not grow
as the run fills an empty store, and what grows is the system's doing.

A short closed-loop burst measures what the suite serves at most on this machine (calls/s
with the load generator in the same run); the soak then offers `load` (80% by default) of
that as an open-loop Poisson stream: 80% GetTimeline, 15% CreatePost, 5% Follow or Unfollow.
Every minute it records calls, errors by status, latency p50/p99 and the resident memory
(RSS) of every process of the suite.

The verdicts the issue asks of a 10-minute run: no errors; no process's RSS grows more than
10% after the first two minutes; the last minute's p99 is at most 1.25x the second minute's.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from fanline.bench.clients import Stubs
from fanline.bench.graph import Graph, synthetic
from fanline.bench.load import load_store
from fanline.bench.stats import percentile
from fanline.bench.suite import running_suite, suite_store
from fanline.gen.feed.v1 import fanout_pb2, post_pb2, timeline_pb2
from fanline.launcher import Suite

MIX = (("read", 0.80), ("post", 0.15), ("follow", 0.05))
CONCURRENCY = 64  # calls in flight at most; beyond it the generator counts late sends
CALIBRATE_S = 15.0
THRESHOLD = 1000
# FANLINE_REBUILD_POSTS_PER_AUTHOR's default: as many posts as a follow ever backfills.
SEED_POSTS_PER_AUTHOR = 50
INBOX_MAX = 800  # FANLINE_INBOX_MAX's default: the seeded inboxes are full
RSS_GROWTH_GOAL = 0.10
P99_GROWTH_GOAL = 1.25


@dataclass
class Minute:
    index: int
    calls: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    late: int = 0  # arrivals that found CONCURRENCY calls in flight (sent when one finished)
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    rss_mb: dict[str, float] = field(default_factory=dict)


@dataclass
class SoakResult:
    minutes: int
    load: float
    capacity_per_s: float
    rate_per_s: float
    users: int
    per_minute: list[Minute] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(sum(m.errors.values()) for m in self.per_minute)

    def rss_growth(self) -> dict[str, float]:
        """Per process: RSS at the end over RSS at the end of minute 2, minus one."""
        if len(self.per_minute) < 3:
            return {}
        base, last = self.per_minute[1].rss_mb, self.per_minute[-1].rss_mb
        return {p: last[p] / base[p] - 1 for p in base if p in last and base[p]}

    @property
    def p99_growth(self) -> float:
        if len(self.per_minute) < 3 or not self.per_minute[1].p99_ms:
            return 0.0
        return self.per_minute[-1].p99_ms / self.per_minute[1].p99_ms

    def service_rss_growth(self) -> dict[str, float]:
        """The verdict leaves out the store: it holds the posts the soak writes, by design."""
        return {p: g for p, g in self.rss_growth().items() if p != "store"}

    @property
    def passed(self) -> bool:
        return (self.errors == 0 and len(self.per_minute) >= 3
                and all(g <= RSS_GROWTH_GOAL for g in self.service_rss_growth().values())
                and self.p99_growth <= P99_GROWTH_GOAL)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "errors": self.errors, "rss_growth": self.rss_growth(),
                "p99_growth": self.p99_growth, "passed": self.passed}


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def suite_rss(suite: Suite) -> dict[str, float]:
    out = {name: rss_mb(proc.pid) for name, proc in suite.procs.items()}
    if suite.store is not None and getattr(suite.store, "pid", None):
        out["store"] = rss_mb(suite.store.pid)  # type: ignore[union-attr]
    return out


class Load:
    """The mixed calls, against a running suite."""

    def __init__(self, stubs: Stubs, graph: Graph, seed: int) -> None:
        self._stubs = stubs
        self._rng = random.Random(seed)
        self._readers = [u for u in graph.users if graph.following[u]]
        self._authors = graph.users
        self._n = 0
        self._toggled: set[tuple[str, str]] = set()

    def pick(self) -> str:
        roll, total = self._rng.random(), 0.0
        for kind, share in MIX:
            total += share
            if roll < total:
                return kind
        return MIX[-1][0]

    async def call(self, kind: str) -> None:
        self._n += 1
        n = self._n
        if kind == "read":
            await self._stubs.timeline_stub(n).GetTimeline(timeline_pb2.GetTimelineRequest(
                user_id=self._rng.choice(self._readers), page_size=20), timeout=10)
        elif kind == "post":
            author = self._rng.choice(self._authors)
            await self._stubs.post_stub(n).CreatePost(post_pb2.CreatePostRequest(
                author_id=author, text=f"soak {n}", request_id=f"soak-{n}"), timeout=10)
        else:  # follow someone new, or unfollow them again: the graph stays the same size
            pair = (self._rng.choice(self._readers), self._rng.choice(self._authors))
            if pair[0] == pair[1]:
                return
            if pair in self._toggled:
                self._toggled.discard(pair)
                await self._stubs.fanout.Unfollow(fanout_pb2.UnfollowRequest(
                    follower_id=pair[0], followee_id=pair[1]), timeout=10)
            else:
                self._toggled.add(pair)
                await self._stubs.fanout.Follow(fanout_pb2.FollowRequest(
                    follower_id=pair[0], followee_id=pair[1]), timeout=10)


async def calibrate(load: Load, seconds: float = CALIBRATE_S) -> float:
    """Calls/s the suite answers with CONCURRENCY callers that never wait."""
    stop = time.perf_counter() + seconds
    done = 0

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            try:
                await load.call(load.pick())
            except grpc.aio.AioRpcError:
                pass
            done += 1

    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    return done / seconds


async def one_minute(load: Load, rate: float, index: int, suite: Suite,
                     seconds: float = 60.0) -> Minute:
    minute = Minute(index)
    latencies: list[float] = []
    gate = asyncio.Semaphore(CONCURRENCY)
    tasks: set[asyncio.Task[None]] = set()
    rng = random.Random(index)

    async def run(kind: str) -> None:
        started = time.perf_counter()
        try:
            await load.call(kind)
            latencies.append((time.perf_counter() - started) * 1000)
        except grpc.aio.AioRpcError as exc:
            minute.errors[exc.code().name] += 1
        finally:
            minute.calls += 1
            gate.release()

    start = time.perf_counter()
    next_at = start
    while True:
        next_at += rng.expovariate(rate)
        if next_at - start >= seconds:
            break
        delay = next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # the arrival schedule (load shape), not a wait on state
        if gate.locked():
            minute.late += 1
        await gate.acquire()
        task = asyncio.create_task(run(load.pick()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    minute.p50_ms = percentile(latencies, 50) if latencies else 0.0
    minute.p99_ms = percentile(latencies, 99) if latencies else 0.0
    minute.rss_mb = suite_rss(suite)
    return minute


def run_soak(minutes: int = 10, load: float = 0.8, users: int = 5000,
             out_dir: str | Path = "bench/out", progress: bool = True,
             minute_s: float = 60.0, seed: int = 1) -> SoakResult:
    """`minute_s`: the length of a "minute" (shorter only to check the tool itself)."""
    out = Path(out_dir)
    graph = synthetic(users=users, mean_follows=20, celebrities=1,
                      celebrity_followers=max(THRESHOLD * 2, users // 2), seed=seed)
    with running_suite(THRESHOLD, 1, out / "logs" / "soak") as suite:

        async def go() -> SoakResult:
            store = await suite_store(suite)
            try:
                await load_store(store, graph, THRESHOLD, SEED_POSTS_PER_AUTHOR, INBOX_MAX, seed)
            finally:
                await store.close()
            stubs = Stubs.connect(suite.post_addr, suite.fanout_addr, suite.timeline_addr)
            try:
                mixed = Load(stubs, graph, seed)
                capacity = await calibrate(mixed, min(CALIBRATE_S, minute_s / 4))
                result = SoakResult(minutes, load, capacity, capacity * load, users)
                if progress:
                    print(f"capacity {capacity:,.0f} calls/s; offering {result.rate_per_s:,.0f}/s",
                          flush=True)
                for index in range(minutes):
                    minute = await one_minute(mixed, result.rate_per_s, index, suite, minute_s)
                    result.per_minute.append(minute)
                    if progress:
                        print(format_minute(minute), flush=True)
                return result
            finally:
                await stubs.close()

        result = asyncio.run(go())
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(result.as_dict(), indent=1))
    return result


def format_minute(m: Minute) -> str:
    rss = ", ".join(f"{p} {mb:.0f}" for p, mb in m.rss_mb.items())
    errors = ", ".join(f"{k} {v}" for k, v in m.errors.items()) or "none"
    return (f"  minute {m.index + 1:2d}: {m.calls:6,} calls, errors {errors}, late {m.late}, "
            f"p50 {m.p50_ms:6.2f} ms, p99 {m.p99_ms:6.2f} ms; RSS MB: {rss}")


def format_soak(r: SoakResult) -> str:
    growth = r.rss_growth()
    worst = max(r.service_rss_growth().items(), key=lambda kv: kv[1], default=("-", 0.0))
    lines = [
        f"soak: {r.minutes} minutes at {r.load:.0%} of {r.capacity_per_s:,.0f} calls/s "
        f"({r.rate_per_s:,.0f}/s; 80% reads, 15% posts, 5% follows), {r.users:,} users",
        *(format_minute(m) for m in r.per_minute),
        f"  errors: {r.errors} (goal 0)",
        f"  RSS growth after minute 2: {', '.join(f'{p} {g:+.1%}' for p, g in growth.items())}"
        f"; worst service {worst[0]} {worst[1]:+.1%} (goal <= +{RSS_GROWTH_GOAL:.0%})",
        f"  p99 last minute / second minute: {r.p99_growth:.2f} (goal <= {P99_GROWTH_GOAL})",
        f"  {'PASS' if r.passed else 'FAIL'}",
    ]
    return "\n".join(lines)
