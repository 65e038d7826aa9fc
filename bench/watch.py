"""`fanline bench watch`: live timelines under load, on one timeline process.

`watchers` readers each follow `follows` of `authors` ordinary (push) authors and hold a
WatchTimeline stream open; posts are created at `rate` per second, round robin over the
authors. For every (watcher, post) delivery it records the time from CreatePost returning to
the entry arriving on the stream, and checks none is missing or repeated. The same run first
does it with `baseline` watchers, so the figures for many watchers come with their ratio to a
few. Memory per watcher is the timeline process's RSS growth while the streams are open,
divided by their number; each run starts a fresh timeline process, so no run reuses memory
an earlier one's streams left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from fanline.bench.soak import rss_mb
from fanline.bench.stats import median, percentile
from fanline.bench.suite import running_suite
from fanline.gen.feed.v1 import (
    fanout_pb2,
    fanout_pb2_grpc,
    post_pb2,
    post_pb2_grpc,
    timeline_pb2,
    timeline_pb2_grpc,
)
from fanline.launcher import Suite

STREAMS_PER_CHANNEL = 100  # HTTP/2 connections the bench client spreads its streams over
DELIVERY_WAIT_S = 60.0


@dataclass(frozen=True)
class WatchScenario:
    watchers: int = 2000
    baseline: int = 20
    authors: int = 20
    follows: int = 2
    posts: int = 100
    rate: float = 10.0
    repeats: int = 3


@dataclass
class Phase:
    watchers: int
    expected: int = 0
    delivered: int = 0
    duplicates: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    rss_idle_mb: float = 0.0
    rss_watching_mb: float = 0.0

    @property
    def kb_per_watcher(self) -> float:
        return (self.rss_watching_mb - self.rss_idle_mb) * 1024 / max(1, self.watchers)

    @property
    def missing(self) -> int:
        return self.expected - self.delivered


@dataclass
class WatchResult:
    scenario: WatchScenario
    phases: list[Phase] = field(default_factory=list)  # (few, many) per repeat, in run order

    def of(self, watchers: int) -> list[Phase]:
        return [p for p in self.phases if p.watchers == watchers]

    def medians(self, watchers: int) -> dict[str, float]:
        runs = self.of(watchers)
        return {"p50_ms": median([p.p50_ms for p in runs]),
                "p99_ms": median([p.p99_ms for p in runs]),
                "kb_per_watcher": median([p.kb_per_watcher for p in runs])}

    @property
    def clean(self) -> bool:
        return all(p.missing == 0 and p.duplicates == 0 for p in self.phases)

    def as_dict(self) -> dict[str, object]:
        return {"scenario": asdict(self.scenario),
                "phases": [{**asdict(p), "kb_per_watcher": p.kb_per_watcher,
                            "missing": p.missing} for p in self.phases],
                "medians": {str(n): self.medians(n)
                            for n in (self.scenario.baseline, self.scenario.watchers)}}


def _followed(watcher: int, s: WatchScenario) -> list[int]:
    """The authors watcher `watcher` follows: `follows` distinct ones, spread evenly."""
    return sorted({(watcher + k * (s.authors // max(1, s.follows) or 1)) % s.authors
                   for k in range(s.follows)})


async def _setup(suite: Suite, s: WatchScenario) -> None:
    async with grpc.aio.insecure_channel(suite.fanout_addr) as channel:
        fanout = fanout_pb2_grpc.FanoutServiceStub(channel)
        requests = [fanout_pb2.FollowRequest(follower_id=f"w{w}", followee_id=f"a{a}")
                    for w in range(s.watchers) for a in _followed(w, s)]
        for start in range(0, len(requests), 200):
            await asyncio.gather(*(fanout.Follow(r, timeout=30)
                                   for r in requests[start:start + 200]))


async def _phase(suite: Suite, s: WatchScenario, count: int) -> Phase:
    phase = Phase(count)
    timeline_pid = suite.procs["timeline"].pid
    gc.collect()
    phase.rss_idle_mb = rss_mb(timeline_pid)
    arrivals: dict[str, list[tuple[int, float]]] = defaultdict(list)
    channels = [grpc.aio.insecure_channel(suite.timeline_addr)
                for _ in range((count + STREAMS_PER_CHANNEL - 1) // STREAMS_PER_CHANNEL)]
    live = received = 0
    target = 0  # deliveries expected, once every post is made
    all_live, all_received = asyncio.Event(), asyncio.Event()

    async def watch(index: int) -> None:
        nonlocal live, received
        stub = timeline_pb2_grpc.TimelineServiceStub(channels[index // STREAMS_PER_CHANNEL])
        call = stub.WatchTimeline(timeline_pb2.WatchTimelineRequest(user_id=f"w{index}"))
        first = True
        async for response in call:
            if first:
                first = False
                live += 1
                if live == count:
                    all_live.set()
            if response.WhichOneof("event") == "entry":
                arrivals[response.entry.post.post_id].append((index, time.monotonic()))
                received += 1
                if target and received >= target:
                    all_received.set()

    tasks = [asyncio.create_task(watch(i)) for i in range(count)]
    try:
        await asyncio.wait_for(all_live.wait(), 120)
        phase.rss_watching_mb = rss_mb(timeline_pid)
        audience = defaultdict(int)
        for w in range(count):
            for a in _followed(w, s):
                audience[a] += 1
        returned: dict[str, float] = {}
        async with grpc.aio.insecure_channel(suite.post_addr) as channel:
            posts = post_pb2_grpc.PostServiceStub(channel)
            started = time.monotonic()
            for n in range(s.posts):
                await asyncio.sleep(max(0.0, started + n / s.rate - time.monotonic()))
                author = n % s.authors
                reply = await posts.CreatePost(post_pb2.CreatePostRequest(
                    author_id=f"a{author}", text=f"watch bench #{n}"), timeout=10)
                returned[reply.post.post_id] = time.monotonic()
                phase.expected += audience[author]
        target = phase.expected
        if received < target:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_received.wait(), DELIVERY_WAIT_S)
        phase.rss_watching_mb = max(phase.rss_watching_mb, rss_mb(timeline_pid))
        delays: list[float] = []
        for post_id, received in arrivals.items():
            if post_id in returned:
                firsts = dict(reversed(received))  # watcher -> first arrival
                phase.duplicates += len(received) - len(firsts)
                delays += [max(0.0, t - returned[post_id]) * 1000 for t in firsts.values()]
        phase.delivered = len(delays)
        if delays:
            phase.p50_ms = percentile(delays, 50)
            phase.p99_ms = percentile(delays, 99)
            phase.max_ms = max(delays)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()
    return phase


def run_watch(s: WatchScenario, out_dir: str | Path = "bench/out") -> WatchResult:
    out = Path(out_dir)
    result = WatchResult(s)
    # Many streams from one client: its channels must not refuse them, nor the server.
    env = {"FANLINE_WATCH_MAX_STREAMS": str(max(5000, s.watchers + 100))}
    with running_suite(10_000, 1, out / "logs" / "watch", extra_env=env) as suite:
        asyncio.run(_setup(suite, s))
        for repeat in range(s.repeats):
            if repeat:
                # A fresh timeline process per run: memory freed by the last run's streams
                # would otherwise be reused and hide what a stream costs.
                suite.stop_process("timeline")
                suite.respawn("timeline")
                suite.wait_healthy(60, ["timeline"])
            for count in (s.baseline, s.watchers):
                result.phases.append(asyncio.run(_phase(suite, s, count)))
    out.mkdir(parents=True, exist_ok=True)
    (out / "watch.json").write_text(json.dumps(result.as_dict(), indent=1))
    return result


def format_watch(r: WatchResult) -> str:
    s = r.scenario
    lines = [f"WatchTimeline on one timeline process: {s.posts} posts at {s.rate:g}/s over "
             f"{s.authors} authors, each watcher following {s.follows}; {s.repeats} runs",
             f"{'watchers':>9} {'deliveries':>11} {'missing':>8} {'dups':>5} {'p50 ms':>8} "
             f"{'p99 ms':>8} {'max ms':>8} {'KB/watcher':>11}"]
    for p in r.phases:
        lines.append(f"{p.watchers:>9} {p.delivered:>11} {p.missing:>8} {p.duplicates:>5} "
                     f"{p.p50_ms:>8.1f} {p.p99_ms:>8.1f} {p.max_ms:>8.1f} "
                     f"{p.kb_per_watcher:>11.1f}")
    few, many = r.medians(s.baseline), r.medians(s.watchers)
    lines.append(f"medians: {s.watchers} watchers p50 {many['p50_ms']:.1f} ms, p99 "
                 f"{many['p99_ms']:.1f} ms, {many['kb_per_watcher']:.1f} KB per watcher; "
                 f"{s.baseline} watchers p50 {few['p50_ms']:.1f} ms, p99 {few['p99_ms']:.1f} ms")
    if few["p99_ms"]:
        lines.append(f"p99 with {s.watchers} watchers / with {s.baseline}: "
                     f"{many['p99_ms'] / few['p99_ms']:.2f}x")
    return "\n".join(lines)


def doc_section(r: WatchResult) -> list[str]:
    """The docs/benchmarks.md section (markdown lines) for a run."""
    s = r.scenario
    command = (f"fanline bench watch --watchers {s.watchers} --baseline {s.baseline} "
               f"--posts {s.posts} --rate {s.rate:g} --repeats {s.repeats}")
    few, many = r.medians(s.baseline), r.medians(s.watchers)
    ratio = many["p99_ms"] / few["p99_ms"] if few["p99_ms"] else 0.0
    return [
        "## Live timelines: WatchTimeline with many watchers", "",
        f"```\n{command}\n```", "", f"```\n{format_watch(r)}\n```", "",
        f"{s.watchers:,} WatchTimeline streams held open on one timeline process, each reader "
        f"following {s.follows} of {s.authors} push authors who post {s.rate:g} times a second "
        f"in turn; the delay is from CreatePost returning (to the bench client) to the entry "
        f"arriving on each stream, so it includes the fan-out queue, the worker's inbox "
        f"script, the announcement, hydration and the bench client's own Python loop reading "
        f"{s.watchers * s.follows * s.rate / s.authors:,.0f} responses a second on the same "
        f"cores. Median of {s.repeats} runs: p50 {many['p50_ms']:.0f} ms, **p99 "
        f"{many['p99_ms']:.0f} ms** (goal: at most 1 s), {ratio:.1f}x the p99 with "
        f"{s.baseline} watchers; **{many['kb_per_watcher']:.0f} KB of timeline-process memory "
        f"per open stream** (RSS growth with the streams open, over their number). Every "
        f"delivery arrived, none twice.", ""]
