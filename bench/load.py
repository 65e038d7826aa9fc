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


class BulkWriter:
    """Pipelined writes over one raw connection, RESP-encoded here.

    redis-py encodes every argument through several calls; for millions of follow edges and
    inbox entries that was most of the load time (about 35 s of 55 for the Slashdot graph).
    Ids repeat (an account is in many follow sets, a post in many inboxes), so each one is
    encoded once and reused. Only commands whose reply is a single line (integers, +OK) are
    sent, which is all the loader needs; an error reply raises.
    """

    CHUNK = 5_000  # commands in flight before their replies are read

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._buffer: list[bytes] = []
        self._queued = 0
        self._tokens: dict[str, bytes] = {}

    @classmethod
    async def open(cls, redis: Redis) -> BulkWriter:
        kwargs = redis.connection_pool.connection_kwargs
        if "path" in kwargs or kwargs.get("ssl"):
            raise ValueError("the bulk loader speaks plain TCP only")
        reader, writer = await asyncio.open_connection(kwargs.get("host", "127.0.0.1"),
                                                       kwargs.get("port", 6379))
        bulk = cls(reader, writer)
        if kwargs.get("password"):
            user = kwargs.get("username")
            bulk.send("AUTH", *((user,) if user else ()), kwargs["password"])
        if kwargs.get("db"):
            bulk.send("SELECT", str(kwargs["db"]))
        await bulk.flush()
        return bulk

    def token(self, value: str) -> bytes:
        cached = self._tokens.get(value)
        if cached is None:
            raw = value.encode()
            cached = self._tokens[value] = b"$%d\r\n%s\r\n" % (len(raw), raw)
        return cached

    @staticmethod
    def raw(value: bytes) -> bytes:
        return b"$%d\r\n%s\r\n" % (len(value), value)

    def send_tokens(self, tokens: list[bytes]) -> None:
        self._buffer.append(b"*%d\r\n" % len(tokens))
        self._buffer += tokens
        self._queued += 1

    def send(self, *args: str) -> None:
        self.send_tokens([self.raw(a.encode()) for a in args])

    async def maybe_flush(self) -> None:
        if self._queued >= self.CHUNK:
            await self.flush()

    async def flush(self) -> None:
        if not self._queued:
            return
        self._writer.write(b"".join(self._buffer))
        await self._writer.drain()
        queued, self._queued = self._queued, 0
        self._buffer.clear()
        error: bytes | None = None
        # Read every reply, even after an error, so the connection stays in step.
        for _ in range(queued):
            line = await self._reader.readline()
            if not line:
                raise ConnectionError("store closed the connection during a bulk write")
            if line[:1] not in b"+:" and error is None:
                error = line
        if error is not None:
            raise RuntimeError(f"store refused a bulk write: {error!r}")

    async def close(self) -> None:
        await self.flush()
        self._writer.close()
        await self._writer.wait_closed()


def _post_body(post_id: int, author: str, text: str) -> bytes:
    created = Timestamp()
    created.FromDatetime(id_time(post_id))
    return post_pb2.Post(
        post_id=str(post_id), author_id=author, text=text, create_time=created
    ).SerializeToString()


def seed_ids(order: list[str], now_ms: int) -> list[int]:
    """Ids for the seed posts, in order, dated across the hour before `now_ms`: increasing,
    unique, and in the services' id layout, so later posts get larger ids."""
    out: list[int] = []
    last = 0
    start_ms = now_ms - SEED_WINDOW_MS
    for n in range(len(order)):
        last = max(id_floor_for_ms(start_ms + n * SEED_WINDOW_MS // max(1, len(order))),
                   last + 1)
        out.append(last)
    return out


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
    bulk = await BulkWriter.open(redis)
    tok = bulk.token
    zero = tok("0")
    zadd = tok("ZADD")
    member = {account: tok(account) for account in graph.following}
    try:
        for account, followees in graph.following.items():
            if followees:
                tokens = [zadd, bulk.raw(keys.following(account).encode())]
                for followee in followees:
                    tokens += (zero, member[followee])
                bulk.send_tokens(tokens)
                await bulk.maybe_flush()
        for account, followers in graph.followers_of().items():
            if followers:
                tokens = [zadd, bulk.raw(keys.followers(account).encode())]
                for follower in followers:
                    tokens += (zero, member[follower])
                bulk.send_tokens(tokens)
                await bulk.maybe_flush()
        # Everyone has just read their timeline: fan-out pushes to all of them (the worst
        # case for push).
        now = tok(str(now_s))
        accounts = list(graph.following)
        for i in range(0, len(accounts), 1000):
            tokens = [tok("MSET")]
            for account in accounts[i:i + 1000]:
                tokens += (bulk.raw(keys.last_seen(account).encode()), now)
            bulk.send_tokens(tokens)
            await bulk.maybe_flush()

        order = seed_plan(graph, seed_posts_per_author, seed)
        ids = seed_ids(order, int(time.time() * 1000))
        posts: dict[str, list[int]] = {}
        post_token = {post_id: bulk.raw(str(post_id).encode()) for post_id in ids}
        for post_id, author in zip(ids, order, strict=True):
            posts.setdefault(author, []).append(post_id)
            body = _post_body(post_id, author, f"seed post {post_id} by {author}")
            bulk.send_tokens([tok("SET"), bulk.raw(keys.post(str(post_id)).encode()),
                              bulk.raw(body)])
            await bulk.maybe_flush()
        if ids:
            # The services' id script continues above this, so workload posts are newer.
            bulk.send("SET", keys.post_id_sequence(), str(ids[-1]))
        for author, own in posts.items():
            tokens = [zadd, bulk.raw(keys.author_posts(author).encode())]
            for post_id in own:
                tokens += (post_token[post_id],) * 2  # score = member = id
            bulk.send_tokens(tokens)
            await bulk.maybe_flush()

        counts = graph.follower_counts()
        pulled = sorted(a for a in posts if counts[a] >= threshold)
        for i in range(0, len(pulled), 1000):
            for key in (keys.merged_authors(), keys.pull_authors()):
                bulk.send("SADD", key, *pulled[i:i + 1000])
        pulled_set = set(pulled)

        inbox_entries = 0
        for account, followees in graph.following.items():
            chosen: list[int] = [] if account in pulled_set else list(posts.get(account, ()))
            for followee in followees:
                if followee not in pulled_set:
                    chosen += posts.get(followee, ())
            if not chosen:
                continue
            newest = sorted(chosen, reverse=True)[:inbox_max]
            inbox_entries += len(newest)
            tokens = [zadd, bulk.raw(keys.inbox(account).encode())]
            for post_id in newest:
                tokens += (post_token[post_id],) * 2
            bulk.send_tokens(tokens)
            await bulk.maybe_flush()
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
