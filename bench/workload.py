"""The mixed workload: a seeded open-loop schedule of posts and timeline reads, and the
driver that plays it against a suite over gRPC while sampling fan-out counters."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
from tqdm import tqdm

from fanline.bench.clients import Stubs, wait_drained
from fanline.bench.graph import Graph
from fanline.gen.feed.v1 import fanout_pb2, post_pb2, timeline_pb2

STATS_INTERVAL_S = 0.25


@dataclass(frozen=True)
class Event:
    at: float  # seconds after the start
    kind: str  # "post" | "read"
    user: str
    n: int


def schedule(
    graph: Graph,
    duration_s: float,
    posts_per_s: float,
    reads_per_s: float,
    celebrities: list[str],
    celebrity_post_share: float,
    seed: int,
) -> list[Event]:
    """Poisson arrivals. A share of posts comes from the celebrities (big accounts post more
    than their number suggests); the rest and all reads are spread evenly over the users who
    follow someone. The same arguments give the same schedule for every strategy."""
    rng = random.Random(seed)
    authors = graph.users
    readers = [u for u in graph.users if graph.following[u]]
    events: list[Event] = []
    for kind, rate in (("post", posts_per_s), ("read", reads_per_s)):
        t = 0.0
        while rate > 0:
            t += rng.expovariate(rate)
            if t >= duration_s:
                break
            if kind == "read":
                user = rng.choice(readers)
            elif celebrities and rng.random() < celebrity_post_share:
                user = rng.choice(celebrities)
            else:
                user = rng.choice(authors)
            events.append(Event(t, kind, user, 0))
    events.sort(key=lambda e: e.at)
    return [Event(e.at, e.kind, e.user, n) for n, e in enumerate(events)]


@dataclass
class Sent:
    post_id: str
    author: str


@dataclass
class DriveResult:
    posts: list[Sent] = field(default_factory=list)
    post_errors: Counter[str] = field(default_factory=Counter)
    read_ms: list[float] = field(default_factory=list)
    read_users: list[str] = field(default_factory=list)
    read_pull_entries: int = 0
    read_entries: int = 0
    read_partial: int = 0
    read_errors: Counter[str] = field(default_factory=Counter)
    late_ms: list[float] = field(default_factory=list)  # how far behind schedule each send was
    not_sent: int = 0  # events dropped because the suite fell too far behind the schedule
    run_s: float = 0.0
    drain_s: float = 0.0
    drained: bool = False
    # (seconds since start, inbox writes, queue depth, pending)
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    base: fanout_pb2.GetFanoutStatsResponse | None = None
    end: fanout_pb2.GetFanoutStatsResponse | None = None


def _code(exc: grpc.aio.AioRpcError) -> str:
    return exc.code().name


async def _sample_stats(stubs: Stubs, out: DriveResult, t0: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            asked = time.perf_counter()
            s = await stubs.stats()
            # The counters were read somewhere during the call: take its midpoint, so a slow
            # reply under load does not make a window look shorter than it was.
            at = (asked + time.perf_counter()) / 2 - t0
            out.samples.append((at, s.inbox_writes, s.queue_depth, s.queue_pending))
        except grpc.aio.AioRpcError:
            pass
        try:
            await asyncio.wait_for(stop.wait(), STATS_INTERVAL_S)
        except TimeoutError:
            pass


async def drive(
    stubs: Stubs,
    events: list[Event],
    concurrency: int,
    page_size: int,
    drain_timeout_s: float,
    progress: bool = True,
    label: str = "",
    request_timeout_s: float = 30.0,
    overrun_s: float | None = None,
) -> DriveResult:
    """Play `events`; stop sending `overrun_s` after the schedule's end (default: a third of
    its length, at least 5 s) and count what was left as not sent, so a strategy that cannot
    keep up is shown as such instead of stretching the run."""
    out = DriveResult()
    end = events[-1].at if events else 0.0
    give_up_at = end + (overrun_s if overrun_s is not None else max(5.0, end / 3))
    log_lines = progress and not sys.stderr.isatty()
    last_line = time.perf_counter()
    done = 0
    out.base = await stubs.stats()
    gate = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()
    # disable=None: a bar on a terminal, nothing in a log file.
    bar = tqdm(total=len(events), desc=label, unit="req", disable=None if progress else True,
               leave=True, dynamic_ncols=True, mininterval=0.5)

    async def post(ev: Event) -> None:
        try:
            reply = await stubs.post_stub(ev.n).CreatePost(
                post_pb2.CreatePostRequest(author_id=ev.user, text=f"post {ev.n} by {ev.user}",
                                           request_id=f"wl-{ev.n}"),
                timeout=request_timeout_s)
            out.posts.append(Sent(reply.post.post_id, ev.user))
        except grpc.aio.AioRpcError as exc:
            out.post_errors[_code(exc)] += 1

    async def read(ev: Event) -> None:
        started = time.perf_counter()
        try:
            reply = await stubs.timeline_stub(ev.n).GetTimeline(
                timeline_pb2.GetTimelineRequest(user_id=ev.user, page_size=page_size),
                timeout=request_timeout_s)
        except grpc.aio.AioRpcError as exc:
            out.read_errors[_code(exc)] += 1
            return
        out.read_ms.append((time.perf_counter() - started) * 1000)
        out.read_users.append(ev.user)
        out.read_entries += len(reply.entries)
        out.read_pull_entries += sum(
            1 for e in reply.entries if e.source == timeline_pb2.ENTRY_SOURCE_PULL)
        out.read_partial += int(reply.partial)

    async def run(ev: Event) -> None:
        nonlocal done, last_line
        try:
            await (post(ev) if ev.kind == "post" else read(ev))
        finally:
            gate.release()
            bar.update(1)
            done += 1
            if log_lines and time.perf_counter() - last_line >= 10:
                last_line = time.perf_counter()
                print(f"{label}: {done:,}/{len(events):,} requests sent and answered, "
                      f"{last_line - t0:.0f}s", file=sys.stderr, flush=True)
            if out.post_errors or out.read_errors:
                bar.set_postfix(errors=sum(out.post_errors.values()) + sum(
                    out.read_errors.values()), refresh=False)

    stop_sampling = asyncio.Event()
    t0 = time.perf_counter()
    sampler = asyncio.create_task(_sample_stats(stubs, out, t0, stop_sampling))
    try:
        for index, ev in enumerate(events):
            delay = ev.at - (time.perf_counter() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
            await gate.acquire()
            if time.perf_counter() - t0 > give_up_at:
                gate.release()
                out.not_sent = len(events) - index
                break
            # Open loop: a full gate delays sends, and that delay is reported, not hidden.
            out.late_ms.append(max(0.0, (time.perf_counter() - t0 - ev.at) * 1000))
            task = asyncio.create_task(run(ev))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        out.run_s = time.perf_counter() - t0
        bar.close()
        drained_at = time.perf_counter()
        out.drained, out.end = await wait_drained(
            stubs, out.base.posts_published + len(out.posts), drain_timeout_s)
        out.drain_s = time.perf_counter() - drained_at
    finally:
        bar.close()
        stop_sampling.set()
        await sampler
    return out
