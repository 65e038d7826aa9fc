"""`fanline bench reads`: GetTimeline latency for one follow mix, one request at a time.

Readers each follow `push_authors` ordinary authors and `pull_authors` celebrities; every
author has `posts_per_author` posts, created through CreatePost and fanned out by the
workers, so the celebrities are PULL by the real publish-time decision (they have
`threshold` followers, padded with audience accounts). Readers are read in turn, one call
at a time over real gRPC; the first calls warm the timeline's caches as traffic would.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from fanline.bench.clients import Stubs, wait_drained
from fanline.bench.graph import Graph
from fanline.bench.load import load_store
from fanline.bench.stats import summarize
from fanline.bench.suite import running_suite, store_cpu_s, suite_store
from fanline.gen.feed.v1 import post_pb2, timeline_pb2, timeline_pb2_grpc
from fanline.launcher import Suite


@dataclass(frozen=True)
class ReadsScenario:
    push_authors: int = 100
    pull_authors: int = 5
    posts_per_author: int = 5
    threshold: int = 1000
    readers: int = 10
    reads: int = 1000
    page_size: int = 20
    warmup: int = 50
    seed: int = 1


@dataclass
class ReadsResult:
    scenario: ReadsScenario
    latencies_ms: list[float] = field(default_factory=list)
    entries_mean: float = 0.0
    pull_entry_share: float = 0.0
    partial: int = 0
    setup_s: float = 0.0
    store_cpu_us_per_read: float = 0.0  # the store's CPU (all primaries) per measured read
    summary: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def reads_graph(s: ReadsScenario) -> Graph:
    if s.readers >= s.threshold:
        raise ValueError("readers must stay below the threshold (push authors stay PUSH)")
    push = [f"p{i:04d}" for i in range(s.push_authors)]
    pull = [f"c{i:02d}" for i in range(s.pull_authors)]
    readers = [f"r{i:03d}" for i in range(s.readers)]
    audience = [f"a{i:05d}" for i in range(s.threshold - s.readers)] if s.pull_authors else []
    following: dict[str, list[str]] = {a: [] for a in [*push, *pull]}
    following.update((r, [*push, *pull]) for r in readers)
    following.update((a, list(pull)) for a in audience)
    return Graph(f"reads: {s.push_authors} push + {s.pull_authors} pull authors", readers,
                 [*push, *pull], audience, following)


async def _setup(s: ReadsScenario, graph: Graph, suite: Suite) -> None:
    store = await suite_store(suite)
    stubs = Stubs.connect(suite.post_addr, suite.fanout_addr, suite.timeline_addr)
    try:
        await load_store(store, graph, s.threshold, 0, 800)
        before = await stubs.stats()
        authors = graph.celebrities  # push authors, then pull authors
        gate = asyncio.Semaphore(16)

        async def create(n: int, author: str) -> None:
            async with gate:
                await stubs.post_stub(n).CreatePost(post_pb2.CreatePostRequest(
                    author_id=author, text=f"post {n} by {author}", request_id=f"r-{n}"),
                    timeout=30)

        # Shuffled (seeded), so the newest page mixes authors in proportion, not by id order.
        order = [a for _ in range(s.posts_per_author) for a in authors]
        random.Random(s.seed).shuffle(order)
        await asyncio.gather(*(create(n, a) for n, a in enumerate(order)))
        drained, _ = await wait_drained(stubs, before.posts_published + len(order), 120)
        if not drained:
            raise TimeoutError("posts were not fanned out in time")
    finally:
        await stubs.close()
        await store.close()


def _store_cpu(suite: Suite) -> float:
    async def read() -> float:
        store = await suite_store(suite)
        try:
            return sum((await store_cpu_s(store)).values())
        finally:
            await store.close()

    return asyncio.run(read())


def run_reads(s: ReadsScenario, out_dir: str | Path = "bench/out",
              name: str | None = None, cluster: int = 0) -> ReadsResult:
    """`cluster`: run on an embedded cluster of that many masters (0: one node)."""
    out = Path(out_dir)
    graph = reads_graph(s)
    result = ReadsResult(s)
    started = time.monotonic()
    with running_suite(s.threshold, 1, out / "logs" / "reads", cluster=cluster) as suite:
        asyncio.run(_setup(s, graph, suite))
        result.setup_s = time.monotonic() - started
        cpu_before = 0.0
        with grpc.insecure_channel(suite.timeline_addr) as channel:
            stub = timeline_pb2_grpc.TimelineServiceStub(channel)
            entries = pulled = 0
            for n in range(s.warmup + s.reads):
                request = timeline_pb2.GetTimelineRequest(
                    user_id=graph.users[n % len(graph.users)], page_size=s.page_size)
                if n == s.warmup:  # the measured reads start: so does the store's CPU count
                    cpu_before = _store_cpu(suite)
                t0 = time.perf_counter()
                reply = stub.GetTimeline(request, timeout=10)
                ms = (time.perf_counter() - t0) * 1000
                if n < s.warmup:
                    continue
                result.latencies_ms.append(ms)
                entries += len(reply.entries)
                pulled += sum(1 for e in reply.entries
                              if e.source == timeline_pb2.ENTRY_SOURCE_PULL)
                result.partial += int(reply.partial)
        result.store_cpu_us_per_read = (_store_cpu(suite) - cpu_before) * 1e6 / max(1, s.reads)
    result.entries_mean = entries / max(1, s.reads)
    result.pull_entry_share = pulled / max(1, entries)
    summary = summarize(result.latencies_ms)
    result.summary = summary.as_dict() if summary else {}
    out.mkdir(parents=True, exist_ok=True)
    stem = name or f"reads-{s.push_authors}-{s.pull_authors}-p{s.page_size}"
    (out / f"{stem}.json").write_text(json.dumps(result.as_dict(), indent=1))
    return result


def format_reads(r: ReadsResult) -> str:
    s = r.scenario
    m = r.summary
    return (
        f"GetTimeline, page size {s.page_size}, concurrency 1, {s.reads} reads over "
        f"{s.readers} readers ({s.warmup} warm-up reads not counted)\n"
        f"  each reader follows {s.push_authors} push + {s.pull_authors} pull authors "
        f"(T={s.threshold:,}), {s.posts_per_author} posts per author\n"
        f"  p50 {m['p50']:.2f} ms   p95 {m['p95']:.2f} ms   p99 {m['p99']:.2f} ms   "
        f"max {m['max']:.2f} ms   mean {m['mean']:.2f} ms\n"
        f"  entries per page {r.entries_mean:.1f}, from pull {r.pull_entry_share:.0%}, "
        f"partial pages {r.partial}"
    )
