"""Putting a graph (and a few older posts per author) into a fresh suite.

Two ways, and every report says which was used:

* `grpc`: the real API. Every account reads its timeline once (which marks it active), every
  edge is a Follow call, every seed post a CreatePost fanned out by the workers. Faithful,
  but about a thousand calls a second here: right for small graphs.
* `store`: a bulk load through the storage layer (fanline.common.store.bulk), in the
  services' own layout and post id format, on one node or a cluster. It reproduces the state
  those calls would leave: follow edges, activity stamps, author post lists, inboxes holding the
  push-mode followees' posts, and PULL authors in the pull and merged sets, as
  AuthorModes.reconcile would put them. Fan-out counters are left alone, so the workload's
  figures start from zero either way.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from fanline.bench.clients import Stubs, wait_drained
from fanline.bench.graph import Graph
from fanline.common.store import Store
from fanline.common.store.bulk import BulkLoad
from fanline.common.store.layout import EPOCH_MS, id_time
from fanline.gen.feed.v1 import fanout_pb2, post_pb2, timeline_pb2

GRPC_MAX_EDGES = 5_000  # above this `auto` loads through the store (gRPC: ~200-1000 follows/s)
SEED_WINDOW_MS = 3_600_000  # seed posts are dated across the hour before the run


@dataclass
class LoadReport:
    method: str
    seconds: float
    accounts: int
    edges: int
    seed_posts: int
    inbox_entries: int

    def describe(self) -> str:
        how = ("real gRPC API (Follow, CreatePost, GetTimeline)" if self.method == "grpc"
               else "store, bulk writes in the services' key layout")
        return (f"{self.accounts:,} accounts, {self.edges:,} follows, {self.seed_posts:,} seed "
                f"posts loaded through the {how} in {self.seconds:.1f}s")


def choose_method(requested: str, graph: Graph) -> str:
    if requested != "auto":
        return requested
    return "grpc" if graph.edges <= GRPC_MAX_EDGES else "store"


def seed_plan(graph: Graph, per_author: int, seed: int) -> list[str]:
    """The authors of the seed posts in posting order (reproducible)."""
    order = [a for a in graph.authors() for _ in range(per_author)]
    random.Random(seed).shuffle(order)
    return order


def _post(post_id: int, author: str, text: str) -> post_pb2.Post:
    created = Timestamp()
    created.FromDatetime(id_time(post_id))
    return post_pb2.Post(post_id=str(post_id), author_id=author, text=text, create_time=created)


async def load_store(
    store: Store,
    graph: Graph,
    threshold: int,
    seed_posts_per_author: int,
    inbox_max: int,
    seed: int = 1,
) -> LoadReport:
    """Bulk-load `graph` into an empty store as the services would have left it."""
    started = time.monotonic()
    bulk = await BulkLoad.open(store.client, store.layout)
    try:
        await bulk.follows(graph.following)
        # Everyone has just read their timeline: fan-out pushes to all of them (the worst
        # case for push).
        await bulk.activate(graph.following, int(time.time()))
        order = seed_plan(graph, seed_posts_per_author, seed)
        # Seed posts are dated across the hour before the run, so later posts are newer.
        start_ms = int(time.time() * 1000) - SEED_WINDOW_MS - EPOCH_MS
        seeds: list[post_pb2.Post] = []
        posts: dict[str, list[int]] = {}
        for n, author in enumerate(order):
            post_id = bulk.post_id(start_ms + n * SEED_WINDOW_MS // max(1, len(order)), author)
            posts.setdefault(author, []).append(post_id)
            seeds.append(_post(post_id, author, f"seed post {post_id} by {author}"))
        await bulk.posts(seeds)
        counts = graph.follower_counts()
        pulled = {a for a in posts if counts[a] >= threshold}
        await bulk.pull_authors(sorted(pulled))
        inbox_entries = 0
        for account, followees in graph.following.items():
            chosen: list[int] = [] if account in pulled else list(posts.get(account, ()))
            for followee in followees:
                if followee not in pulled:
                    chosen += posts.get(followee, ())
            newest = sorted(chosen, reverse=True)[:inbox_max]
            inbox_entries += len(newest)
            await bulk.inbox(account, newest)
    finally:
        await bulk.close()
    return LoadReport("store", time.monotonic() - started, len(graph.following), graph.edges,
                      len(order), inbox_entries)


async def _bounded(jobs: Iterable[Callable[[], Awaitable[object]]], concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def run(job: Callable[[], Awaitable[object]]) -> None:
        async with gate:
            await job()

    await asyncio.gather(*(run(j) for j in jobs))


async def load_grpc(
    stubs: Stubs,
    graph: Graph,
    seed_posts_per_author: int,
    seed: int = 1,
    concurrency: int = 32,
    drain_timeout_s: float = 120,
) -> LoadReport:
    """Load through the public API only; waits until the seed posts are fanned out."""
    started = time.monotonic()
    accounts = list(graph.following)
    # A first read marks the account active (an inbox rebuild), so fan-out will push to it.
    await _bounded(
        ((lambda a=a, n=n: stubs.timeline_stub(n).GetTimeline(
            timeline_pb2.GetTimelineRequest(user_id=a, page_size=1), timeout=30))
         for n, a in enumerate(accounts)),
        concurrency,
    )
    await _bounded(
        ((lambda a=a, b=b: stubs.fanout.Follow(
            fanout_pb2.FollowRequest(follower_id=a, followee_id=b), timeout=30))
         for a, followees in graph.following.items() for b in followees),
        concurrency,
    )
    before = await stubs.stats()
    order = seed_plan(graph, seed_posts_per_author, seed)
    await _bounded(
        ((lambda n=n, a=a: stubs.post_stub(n).CreatePost(
            post_pb2.CreatePostRequest(author_id=a, text=f"seed post {n} by {a}",
                                       request_id=f"seed-{n}"), timeout=30))
         for n, a in enumerate(order)),
        concurrency,
    )
    drained, after = await wait_drained(stubs, before.posts_published + len(order),
                                        drain_timeout_s)
    if not drained:
        raise TimeoutError("seed posts were not fanned out in time")
    return LoadReport("grpc", time.monotonic() - started, len(accounts), graph.edges,
                      len(order), after.inbox_writes - before.inbox_writes)
