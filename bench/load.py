"""Putting a graph (and a few older posts per author) into a fresh suite.

Two ways, and every report says which was used:

* `grpc`: the real API. Every account reads its timeline once (which marks it active), every
  edge is a Follow call, every seed post a CreatePost fanned out by the workers. Faithful,
  but about a thousand calls a second here: right for small graphs.
* `store`: bulk writes of exactly the keys the services keep (services.common.keys), with
  post ids from the services' id layout (services.common.ids). It reproduces the state those
  calls would leave: follow sets, activity stamps, author post lists, inboxes holding the
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
from redis.asyncio import Redis

from bench.clients import Stubs, wait_drained
from bench.graph import Graph
from services.common import keys
from services.common.ids import id_floor_for_ms, id_time
from services.gen.feed.v1 import fanout_pb2, post_pb2, timeline_pb2

GRPC_MAX_EDGES = 20_000  # above this `auto` loads through the store (gRPC would take minutes)
PIPELINE_CHUNK = 2_000
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


async def _chunked(redis: Redis, commands: Iterable[Callable[[object], object]]) -> None:
    pipe = redis.pipeline(transaction=False)
    queued = 0
    for command in commands:
        command(pipe)
        queued += 1
        if queued >= PIPELINE_CHUNK:
            await pipe.execute()
            queued = 0
    if queued:
        await pipe.execute()


def _post_body(post_id: int, author: str, text: str) -> bytes:
    created = Timestamp()
    created.FromDatetime(id_time(post_id))
    return post_pb2.Post(
        post_id=str(post_id), author_id=author, text=text, create_time=created
    ).SerializeToString()


async def load_store(
    redis: Redis,
    graph: Graph,
    threshold: int,
    seed_posts_per_author: int,
    inbox_max: int,
    seed: int = 1,
) -> LoadReport:
    """Bulk-load `graph` into an empty store as the services would have left it."""
    started = time.monotonic()
    now_s = int(time.time())
    followers = graph.followers_of()
    await _chunked(redis, (
        (lambda p, a=a, f=f: p.zadd(keys.following(a), dict.fromkeys(f, 0)))
        for a, f in graph.following.items() if f
    ))
    await _chunked(redis, (
        (lambda p, a=a, f=f: p.zadd(keys.followers(a), dict.fromkeys(f, 0)))
        for a, f in followers.items() if f
    ))
    accounts = list(graph.following)
    # Everyone has just read their timeline: fan-out pushes to all of them (worst case for push).
    await _chunked(redis, (
        (lambda p, c=accounts[i:i + 1000]: p.mset(dict.fromkeys((keys.last_seen(a) for a in c),
                                                                 now_s)))
        for i in range(0, len(accounts), 1000)
    ))

    order = seed_plan(graph, seed_posts_per_author, seed)
    posts: dict[str, list[int]] = {}
    start_ms = int(time.time() * 1000) - SEED_WINDOW_MS
    last = 0
    bodies: list[tuple[int, str]] = []
    for n, author in enumerate(order):
        post_id = max(id_floor_for_ms(start_ms + n * SEED_WINDOW_MS // max(1, len(order))),
                      last + 1)
        last = post_id
        posts.setdefault(author, []).append(post_id)
        bodies.append((post_id, author))
    if last:
        # The services' id script continues above this, so workload posts are newer.
        await redis.set(keys.post_id_sequence(), last)
    await _chunked(redis, (
        (lambda p, i=i, a=a: p.set(keys.post(str(i)), _post_body(i, a, f"seed post {i} by {a}")))
        for i, a in bodies
    ))
    await _chunked(redis, (
        (lambda p, a=a, ids=ids: p.zadd(keys.author_posts(a), {str(i): i for i in ids}))
        for a, ids in posts.items()
    ))

    counts = graph.follower_counts()
    pulled = {a for a in posts if counts[a] >= threshold}
    if pulled:
        await _chunked(redis, (
            (lambda p, c=list(pulled)[i:i + 1000]: (p.sadd(keys.merged_authors(), *c),
                                                    p.sadd(keys.pull_authors(), *c)))
            for i in range(0, len(pulled), 1000)
        ))

    inbox_entries = 0

    def inbox_of(account: str) -> dict[str, int]:
        nonlocal inbox_entries
        ids: list[int] = list(posts.get(account, [])) if account not in pulled else []
        for followee in graph.following[account]:
            if followee not in pulled:
                ids += posts.get(followee, ())
        newest = sorted(ids, reverse=True)[:inbox_max]
        inbox_entries += len(newest)
        return {str(i): i for i in newest}

    await _chunked(redis, (
        (lambda p, a=a, m=m: p.zadd(keys.inbox(a), m))
        for a in accounts if (m := inbox_of(a))
    ))
    return LoadReport("store", time.monotonic() - started, len(accounts), graph.edges,
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
