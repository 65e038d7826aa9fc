"""What one post's fan-out write costs the store under three key layouts, on a Valkey Cluster and
on a single node: the numbers behind the cluster key-layout choice.

Layouts (every follower is active, so every follower gets the post):

- **A bucketed (B = 64, 256)**: a user's keys live in bucket ``crc32(user) % B``; each bucket has a
  hash tag that puts it in the bucket's own 1/B of the slot range, so a bucket never spans nodes.
  Keys ``fl:{tag}:inbox:<user>``, ``fl:{tag}:seen:<user>``; the author's followers are partitioned
  by bucket in ``fl:{tag}:followers-here:<author>``. Per post: one pipeline of ZRANGE reads (one per
  non-empty bucket, plus one per further 1,000 in a bucket), then one pipeline of EVALSHA calls,
  each declaring the partition and its followers' inbox/seen keys (all one slot); the follow-edge
  check is a ZSCORE on the partition.
- **B per node**: per-user tags ``{u:<user>}``; the author's followers in one sorted set. Each 1,000
  followers are grouped by the node owning their slot; one EVALSHA per group with the
  ``allow-cross-slot-keys`` flag declares one key of that node and passes the follower keys as ARGV.
  The follow check is a ZSCORE on the follower's own ``following`` set. Reads: one pipeline.
- **S today** (single node only, the reference): per-user tags ``{<user>}``, one EVALSHA per 1,000
  followers declaring (inbox, seen, following) of each.

Every script does the same per-follower work: GET seen, the follow check, ZADD, ZCARD and (never
here, see below) ZREMRANGEBYRANK; it returns how many inboxes it wrote, checked to equal N.

How it is measured: one asyncio process (redis.asyncio; ``RedisCluster.from_url(first seed)`` for
the cluster), 3-master ``EmbeddedCluster`` and one ``EmbeddedStore`` on this machine. Each cell
(deployment, layout, N) starts from a flushed store and loads, unmeasured:

- N followers with random-looking ids (sequential ids fill crc32 buckets unrealistically evenly);
- per follower an inbox of 400 entries (so ZADD/ZCARD work on realistic skiplists), a `seen`
  stamp of now and, for B and S, a `following` set of 20 accounts (fanline.bench.graph's mean) with the
  author in the middle; all created in random order (see `Layout.setup` for why that matters);
- the author's followers (one set, or one partition per bucket for A).

Then one warm-up post, then P posts one after another, 3 times; the table shows the median of the
repeats. The worker is taken to know the author's follower count (per bucket for A), as it
would from the author's record, so each post is exactly two round trips. Post ids are new and
increasing. Inboxes are cut back to their 400 entries (unmeasured) whenever the next posts would
take them past the 800 cap, so no write ever trims and every N does the same per-follower work;
the trim would cost the same under every layout. Before its first cell each deployment loads and
drops the largest N once (see `Driver.prime`).

Columns, all per post:

- **calls**: EVALSHA calls; **round trips**: pipeline executions the worker waits on (reads, then
  scripts); **node sends**: per-node batches inside those pipelines (redis-py sends a cluster
  pipeline's per-node batches in parallel).
- **store CPU ms**: the figure to compare layouts by. CPU of the store processes (INFO cpu
  user+sys, summed over masters), so it counts what commandstats leaves out: parsing thousands of
  arguments, the cluster's slot check of every declared key, replies, socket I/O. Idle cluster
  nodes add ~1.5 ms per second each (negligible here). **µs/follower** is this divided by N.
- **store cmd ms**: time inside the commands the worker sends (INFO commandstats usec of EVALSHA +
  ZRANGE, summed over masters; commands called from scripts are inside EVALSHA's figure and not
  added again). commandstats times elapsed time, so a node preempted mid-command is charged for the
  wait: on this 2-core machine three nodes plus the client inflate it on the cluster, never trust
  cluster vs single-node comparisons of this column; within one deployment it ranks like CPU.
- **wall ms**: time for one post as the worker sees it (client CPU included: the client shares this
  machine's 2 cores with the store), and **writes/s** = N / wall.

Commands are packed with hiredis as the services do (redis-py packs in Python, ~1.3 µs per
argument). Script calls on the cluster name their node (``target_nodes``), which the worker knows
from the bucket tag or from its grouping, so redis-py does not re-hash every declared key.

Run: ``python -m fanline.bench.layouts [--quick] [--out results.md]``. The full run (N up to 100,000) takes
about 4 minutes on 2 cores and ~5 GB of store memory in the 100,000-follower cells; ``--quick``
(N up to 10,000, one repeat) about 20 seconds. Progress goes to stderr, the report to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hiredis
from redis.asyncio import Connection, ConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from fanline.bench.stats import median
from fanline.common.embedded import EmbeddedCluster, EmbeddedStore

INBOX_CAP = 800
PREFILL = 400  # entries already in every inbox; ids 1..PREFILL, older than any benchmark post
HEADROOM = INBOX_CAP - PREFILL  # posts an inbox takes before the trim would fire
BATCH = 1000  # followers per script call, as the production worker
AUTHOR = "a0"
ACTIVE_WINDOW_S = 30 * 86400
FIRST_POST_ID = 10**12
LOAD_CHUNK = 2000  # commands per loading pipeline round

# Posts per repeat: the same for every layout (so every inbox goes through the same states), which
# puts a repeat at ~0.7-3 s between the cheapest and the dearest layout.
FULL_POSTS = {10: 3000, 100: 1200, 1000: 300, 100_000: 3}
QUICK_POSTS = {10: 500, 100: 300, 1000: 50, 10_000: 5}

# -- scripts --------------------------------------------------------------------------------
# The per-follower body is the production push script's: activity check, follow check, ZADD,
# trim. Each returns the number of inboxes written so the harness can check the fan-out.

BUCKET_SCRIPT = """
local id, cap, since = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local written = 0
for j = 1, #ARGV - 3 do
  local inbox = KEYS[2 * j]
  if tonumber(redis.call('GET', KEYS[2 * j + 1]) or '0') >= since
      and redis.call('ZSCORE', KEYS[1], ARGV[3 + j]) then
    redis.call('ZADD', inbox, id, id)
    if redis.call('ZCARD', inbox) > cap then
      redis.call('ZREMRANGEBYRANK', inbox, 0, -(cap + 1))
    end
    written = written + 1
  end
end
return written
"""

PER_NODE_SCRIPT = """#!lua flags=allow-cross-slot-keys
local id, cap, since, author = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local written = 0
for i = 5, #ARGV, 3 do
  local inbox = ARGV[i]
  if tonumber(redis.call('GET', ARGV[i + 1]) or '0') >= since
      and redis.call('ZSCORE', ARGV[i + 2], author) then
    redis.call('ZADD', inbox, id, id)
    if redis.call('ZCARD', inbox) > cap then
      redis.call('ZREMRANGEBYRANK', inbox, 0, -(cap + 1))
    end
    written = written + 1
  end
end
return written
"""

SINGLE_SCRIPT = """
local id, cap, since, author = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local written = 0
for i = 1, #KEYS, 3 do
  local inbox = KEYS[i]
  if tonumber(redis.call('GET', KEYS[i + 1]) or '0') >= since
      and redis.call('ZSCORE', KEYS[i + 2], author) then
    redis.call('ZADD', inbox, id, id)
    if redis.call('ZCARD', inbox) > cap then
      redis.call('ZREMRANGEBYRANK', inbox, 0, -(cap + 1))
    end
    written = written + 1
  end
end
return written
"""

# An inbox's pre-filled content as ZADD arguments (score, member, ...): ids 1..PREFILL.
PREFILL_ARGS: tuple[bytes, ...] = tuple(
    part for i in range(1, PREFILL + 1) for part in (str(i).encode(), str(i).encode())
)
# A follower's `following` set (layouts B and S): the author among 20 accounts, the mean of
# fanline.bench.graph's synthetic graph, so ZSCORE scans a realistic listpack; the others sort on both
# sides of the author ('0' < 'a' < 'z') so the scan stops mid-way, not at the first entry.
FOLLOWING_ARGS: tuple[str | int, ...] = tuple(
    part for name in [*(f"0f{i:02d}" for i in range(10)), AUTHOR, *(f"zf{i:02d}" for i in range(9))]
    for part in (0, name)
)


class HiredisConnection(Connection):
    """Packs commands with hiredis's C encoder, as the services' client does: a script call
    carries up to 3,000 keys, and redis-py's Python packing would dominate the client's time."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:
            # redis-py passes multi-word commands ("CONFIG RESETSTAT") as one argument.
            args = (*args[0].split(), *args[1:])
        return [hiredis.pack_command(args)]


def plain_client(url: str, socket_timeout: float | None = None) -> Redis:
    return Redis.from_pool(ConnectionPool.from_url(url, connection_class=HiredisConnection,
                                                   socket_timeout=socket_timeout))


# -- deployments ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Cumulative counters of all masters at one moment."""

    cmd_usec: float  # commandstats usec of the commands the worker sends
    cpu_s: float  # process CPU, user + sys

    def __sub__(self, other: Snapshot) -> Snapshot:
        return Snapshot(self.cmd_usec - other.cmd_usec, self.cpu_s - other.cpu_s)


class Deployment:
    """The fan-out client plus one plain connection per master (stats, loading, flushing)."""

    def __init__(self, name: str, client: Redis | RedisCluster, master_urls: list[str]) -> None:
        self.name = name
        self.client = client
        # No read timeout: a SYNC flush of a 100,000-follower cell takes seconds.
        self.masters = [plain_client(url) for url in master_urls]
        self.cluster = client if isinstance(client, RedisCluster) else None
        # Owner of each slot, from the cluster client's slot map (master index and client node).
        self._slot_master: list[int] = [0] * REDIS_CLUSTER_HASH_SLOTS
        self._slot_node: list[ClusterNode | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        if self.cluster is not None:
            ports = [int(url.rsplit(":", 1)[1].split("/")[0]) for url in master_urls]
            for slot in range(REDIS_CLUSTER_HASH_SLOTS):
                node = self.cluster.nodes_manager.get_node_from_slot(slot)
                self._slot_node[slot] = node
                self._slot_master[slot] = ports.index(int(node.port))

    @classmethod
    async def start_cluster(cls, store: EmbeddedCluster) -> Deployment:
        seeds = store.url.split(",")
        client = RedisCluster.from_url(seeds[0])
        # RedisCluster takes no connection_class; the nodes it discovers are built from this dict.
        client.nodes_manager.connection_kwargs["connection_class"] = HiredisConnection
        await client.initialize()
        assert all(node.connection_class is HiredisConnection for node in client.get_nodes())
        masters = [f"redis://127.0.0.1:{port}" for port in store.masters()]
        return cls("cluster (3 masters)", client, masters)

    @classmethod
    async def start_single(cls, store: EmbeddedStore) -> Deployment:
        return cls("single node", plain_client(store.url), [store.url])

    async def aclose(self) -> None:
        await self.client.aclose()
        for master in self.masters:
            await master.aclose()

    def pipeline(self) -> Pipeline | ClusterPipeline:
        if self.cluster is not None:
            return self.cluster.pipeline()
        assert isinstance(self.client, Redis)
        return self.client.pipeline(transaction=False)

    def node_of_slot(self, slot: int) -> str:
        """A name for the node owning `slot` (grouping and counting per-node batches)."""
        node = self._slot_node[slot]
        return node.name if node is not None else "single"

    def target(self, slot: int) -> dict[str, Any]:
        """execute_command kwargs that send a script call straight to the slot's node."""
        node = self._slot_node[slot]
        return {"target_nodes": node} if node is not None else {}

    async def flush(self) -> None:
        # SYNC: the default (lazy-user-flush) would free the last cell's data in a background
        # thread while the next cell is measured.
        await asyncio.gather(*(m.execute_command("FLUSHALL", "SYNC") for m in self.masters))

    async def load_script(self, source: str) -> str:
        shas = await asyncio.gather(*(m.script_load(source) for m in self.masters))
        return str(shas[0])

    async def template(self, zadd_args: tuple[Any, ...]) -> bytes:
        """DUMP of a sorted set. Loading 100,000 inboxes with RESTORE of it is ~5x faster than
        ZADD of 400 members each, and gives the same (skiplist) encoding."""
        key = next(k for k in (f"fl:template:{i}" for i in range(100))
                   if self._slot_master[key_slot(k.encode())] == 0)
        master = self.masters[0]
        await master.execute_command("ZADD", key, *zadd_args)
        payload = await master.dump(key)
        await master.delete(key)
        assert isinstance(payload, bytes)
        return payload

    async def load(self, commands: Iterable[tuple[Any, ...]]) -> None:
        """Run write commands (key second) on their masters, in pipelines, all masters at once."""
        buffers: list[list[tuple[Any, ...]]] = [[] for _ in self.masters]
        pending = 0
        for args in commands:
            key = args[1] if isinstance(args[1], bytes) else str(args[1]).encode()
            buffers[self._slot_master[key_slot(key)]].append(args)
            pending += 1
            if pending >= LOAD_CHUNK:
                await self._send(buffers)
                buffers, pending = [[] for _ in self.masters], 0
        await self._send(buffers)

    async def _send(self, buffers: list[list[tuple[Any, ...]]]) -> None:
        async def one(master: Redis, batch: list[tuple[Any, ...]]) -> None:
            if batch:
                async with master.pipeline(transaction=False) as pipe:
                    for args in batch:
                        pipe.execute_command(*args)
                    await pipe.execute()

        await asyncio.gather(*(one(m, b) for m, b in zip(self.masters, buffers, strict=True)))

    async def snapshot(self) -> Snapshot:
        async def one(master: Redis) -> Snapshot:
            stats = await master.info("commandstats")
            cpu = await master.info("cpu")
            usec = sum(stats.get(f"cmdstat_{name}", {}).get("usec", 0) for name in ("evalsha", "zrange"))
            return Snapshot(float(usec), float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]))

        parts = await asyncio.gather(*(one(m) for m in self.masters))
        return Snapshot(sum(p.cmd_usec for p in parts), sum(p.cpu_s for p in parts))


# -- layouts --------------------------------------------------------------------------------


@dataclass
class PostCost:
    calls: int = 0
    round_trips: int = 0
    node_sends: int = 0
    written: int = 0


class Layout(ABC):
    label: str
    source: str

    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self.sha = ""
        self.inbox_dump = b""
        self.following_dump = b""
        self.followers: list[str] = []

    async def setup(self, followers: list[str], now: int) -> None:
        self.followers = followers
        self.sha = await self.dep.load_script(self.source)
        self.inbox_dump = await self.dep.template(PREFILL_ARGS)
        self.following_dump = await self.dep.template(FOLLOWING_ARGS)
        # Keys are created in random order. Created in id order, they sit in memory in the order
        # the followers set returns them, so layouts B and S walked memory sequentially while A
        # (bucket order) jumped around: that alone cost A ~1 µs a follower at 20,000 followers.
        # In production an inbox's place in memory has nothing to do with its owner's id.
        shuffled = random.Random(len(followers)).sample(followers, len(followers))
        await self.dep.load(self.population(shuffled, now))

    @abstractmethod
    def inbox(self, user: str) -> str: ...

    @abstractmethod
    def population(self, followers: list[str], now: int) -> Iterator[tuple[Any, ...]]: ...

    @abstractmethod
    async def fan_out(self, post_id: int, since: int) -> PostCost: ...

    async def reset_inboxes(self) -> None:
        """Drop the benchmark's posts, back to the pre-filled 400 entries (not measured)."""
        await self.dep.load(("ZREMRANGEBYSCORE", self.inbox(u), FIRST_POST_ID, "+inf")
                            for u in self.followers)


def chunks(members: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(members), size):
        yield members[start:start + size]


def bucket_tag(bucket: int, buckets: int) -> str:
    """The first tag b<bucket>.<n> whose slot is in the bucket's 1/B of the slot range."""
    low = bucket * REDIS_CLUSTER_HASH_SLOTS // buckets
    high = (bucket + 1) * REDIS_CLUSTER_HASH_SLOTS // buckets
    n = 0
    while not low <= key_slot(f"b{bucket}.{n}".encode()) < high:
        n += 1
    return f"b{bucket}.{n}"


class Bucketed(Layout):
    source = BUCKET_SCRIPT

    def __init__(self, dep: Deployment, buckets: int) -> None:
        super().__init__(dep)
        self.buckets = buckets
        self.label = f"A bucketed B={buckets}"
        self.tags = [bucket_tag(i, buckets) for i in range(buckets)]
        self.slots = [key_slot(tag.encode()) for tag in self.tags]
        # Key prefixes as bytes: the worker appends ZRANGE's byte members without decoding.
        self.inbox_prefix = [f"fl:{{{tag}}}:inbox:".encode() for tag in self.tags]
        self.seen_prefix = [f"fl:{{{tag}}}:seen:".encode() for tag in self.tags]
        self.partition = [f"fl:{{{tag}}}:followers-here:{AUTHOR}" for tag in self.tags]
        self.counts: dict[int, int] = {}

    def bucket(self, user: str) -> int:
        return zlib.crc32(user.encode()) % self.buckets

    def inbox(self, user: str) -> str:
        return f"fl:{{{self.tags[self.bucket(user)]}}}:inbox:{user}"

    def population(self, followers: list[str], now: int) -> Iterator[tuple[Any, ...]]:
        by_bucket: dict[int, list[str]] = {}
        for user in followers:
            b = self.bucket(user)
            by_bucket.setdefault(b, []).append(user)
            yield ("RESTORE", self.inbox(user), 0, self.inbox_dump)
            yield ("SET", f"fl:{{{self.tags[b]}}}:seen:{user}", now)
        for b, users in by_bucket.items():
            for part in chunks(users, BATCH):
                yield ("ZADD", self.partition[b], *(x for u in part for x in (0, u)))
        # What the worker knows before reading: followers per bucket (kept with the author's
        # record in a real deployment; not part of the measured cost).
        self.counts = {b: len(users) for b, users in sorted(by_bucket.items())}

    async def fan_out(self, post_id: int, since: int) -> PostCost:
        reads = [(b, start) for b, count in self.counts.items() for start in range(0, count, BATCH)]
        pipe = self.dep.pipeline()
        for b, start in reads:
            pipe.zrange(self.partition[b], start, start + BATCH - 1)
        pages = await pipe.execute()
        pipe = self.dep.pipeline()
        calls = 0
        for (b, _), members in zip(reads, pages, strict=True):
            if not members:
                continue
            inbox, seen = self.inbox_prefix[b], self.seen_prefix[b]
            keys: list[Any] = [self.partition[b]]
            for m in members:
                keys += (inbox + m, seen + m)
            pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, post_id, INBOX_CAP, since,
                                 *members, **self.dep.target(self.slots[b]))
            calls += 1
        written = await pipe.execute()
        nodes = len({self.dep.node_of_slot(self.slots[b]) for b, _ in reads})
        # Reads and script calls go to the same nodes: one send per node in each pipeline.
        return PostCost(calls=calls, round_trips=2, node_sends=2 * nodes, written=sum(written))


class _FollowersList(Layout):
    """The author's followers in one sorted set, read 1,000 at a time by rank in one pipeline."""

    followers_key: str

    def population(self, followers: list[str], now: int) -> Iterator[tuple[Any, ...]]:
        for user in followers:
            inbox, seen, following = self.user_keys(user)
            yield ("RESTORE", inbox, 0, self.inbox_dump)
            yield ("SET", seen, now)
            yield ("RESTORE", following, 0, self.following_dump)
        for part in chunks(followers, BATCH):
            yield ("ZADD", self.followers_key, *(x for u in part for x in (0, u)))

    @abstractmethod
    def user_keys(self, user: str) -> tuple[str, str, str]: ...

    def inbox(self, user: str) -> str:
        return self.user_keys(user)[0]

    async def read_pages(self) -> list[list[bytes]]:
        pipe = self.dep.pipeline()
        for start in range(0, len(self.followers), BATCH):
            pipe.zrange(self.followers_key, start, start + BATCH - 1)
        return list(await pipe.execute())


class PerNode(_FollowersList):
    label = "B per-node, cross-slot flag"
    source = PER_NODE_SCRIPT
    followers_key = f"fl:{{u:{AUTHOR}}}:followers"

    def user_keys(self, user: str) -> tuple[str, str, str]:
        return f"fl:{{u:{user}}}:inbox", f"fl:{{u:{user}}}:seen", f"fl:{{u:{user}}}:following"

    async def fan_out(self, post_id: int, since: int) -> PostCost:
        pages = await self.read_pages()
        pipe = self.dep.pipeline()
        calls = 0
        nodes: set[str] = set()
        for members in pages:
            # Group this page's followers by the node owning their slot (the {u:<user>} tag).
            groups: dict[str, tuple[int, list[bytes]]] = {}
            for m in members:
                slot = key_slot(b"u:" + m)
                groups.setdefault(self.dep.node_of_slot(slot), (slot, []))[1].append(m)
            for node, (slot, users) in groups.items():
                args: list[Any] = [post_id, INBOX_CAP, since, AUTHOR]
                for m in users:
                    args += (b"fl:{u:" + m + b"}:inbox", b"fl:{u:" + m + b"}:seen",
                             b"fl:{u:" + m + b"}:following")
                # One declared key routes the call (the flag only covers undeclared keys).
                pipe.execute_command("EVALSHA", self.sha, 1, args[4], *args, **self.dep.target(slot))
                calls += 1
                nodes.add(node)
        written = await pipe.execute()
        # The reads all hit the one node holding the author's followers.
        return PostCost(calls=calls, round_trips=2, node_sends=1 + len(nodes), written=sum(written))


class Single(_FollowersList):
    label = "S today's layout"
    source = SINGLE_SCRIPT
    followers_key = f"fl:{{{AUTHOR}}}:followers"

    def user_keys(self, user: str) -> tuple[str, str, str]:
        return f"fl:{{{user}}}:inbox", f"fl:{{{user}}}:seen", f"fl:{{{user}}}:following"

    async def fan_out(self, post_id: int, since: int) -> PostCost:
        pages = await self.read_pages()
        pipe = self.dep.pipeline()
        for members in pages:
            keys: list[bytes] = []
            for m in members:
                keys += (b"fl:{" + m + b"}:inbox", b"fl:{" + m + b"}:seen", b"fl:{" + m + b"}:following")
            pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, post_id, INBOX_CAP, since, AUTHOR)
        written = await pipe.execute()
        return PostCost(calls=len(pages), round_trips=2, node_sends=2, written=sum(written))


LayoutFactory = Callable[[Deployment], Layout]
CLUSTER_LAYOUTS: list[LayoutFactory] = [
    lambda d: Bucketed(d, 64), lambda d: Bucketed(d, 256), PerNode,
]
SINGLE_LAYOUTS: list[LayoutFactory] = [*CLUSTER_LAYOUTS, Single]


# -- measurement ----------------------------------------------------------------------------


@dataclass
class Run:
    """One repeat of a cell: totals over its posts."""

    posts: int
    cost: PostCost
    store: Snapshot
    wall_s: float


@dataclass
class Cell:
    deployment: str
    layout: str
    n: int
    posts: int
    runs: list[Run]

    def per_post(self, value: Callable[[Run], float]) -> float:
        return median([value(run) / run.posts for run in self.runs])


def follower_ids(n: int) -> list[str]:
    """Random-looking ids (fixed seed). Sequential ids ("u000001", ...) spread over crc32 buckets
    far more evenly than real ids would (crc32 is linear), understating how many buckets stay empty
    and so how many script calls a small post needs."""
    rng = random.Random(n)
    ids: set[str] = set()
    while len(ids) < n:
        ids.add(f"u{rng.getrandbits(48):012x}")
    return sorted(ids)


class Driver:
    def __init__(self) -> None:
        self.next_id = FIRST_POST_ID
        self.since_reset = 0  # posts added to every inbox since the last reset

    async def post(self, layout: Layout, since: int, n: int) -> PostCost:
        self.next_id += 1
        cost = await layout.fan_out(self.next_id, since)
        if cost.written != n:
            raise AssertionError(f"{layout.label}: wrote {cost.written} inboxes, expected {n}")
        return cost

    async def run(self, layout: Layout, posts: int, since: int, n: int) -> Run:
        total = PostCost()
        store = Snapshot(0.0, 0.0)
        wall = 0.0
        remaining = posts
        while remaining:
            # Measured in rounds that keep every inbox under the cap; resets sit between rounds.
            k = min(remaining, HEADROOM)
            if self.since_reset + k > HEADROOM:
                await layout.reset_inboxes()
                self.since_reset = 0
            before = await layout.dep.snapshot()
            started = time.perf_counter()
            for _ in range(k):
                cost = await self.post(layout, since, n)
                total.calls += cost.calls
                total.round_trips += cost.round_trips
                total.node_sends += cost.node_sends
                total.written += cost.written
            wall += time.perf_counter() - started
            delta = await layout.dep.snapshot() - before
            store = Snapshot(store.cmd_usec + delta.cmd_usec, store.cpu_s + delta.cpu_s)
            self.since_reset += k
            remaining -= k
        return Run(posts, total, store, wall)

    async def prime(self, dep: Deployment, factory: LayoutFactory, n: int) -> None:
        """Load and drop the largest cell once before measuring. The first 100,000-follower cell
        on fresh store processes measured ~10% more store CPU than the same cell run later,
        whatever its layout; priming takes that order effect out of the comparison."""
        started = time.perf_counter()
        await dep.flush()
        await factory(dep).setup(follower_ids(n), int(time.time()))
        await dep.flush()
        log(f"  {dep.name:20} primed with N={n:,} in {time.perf_counter() - started:.1f}s")

    async def cell(self, dep: Deployment, factory: LayoutFactory, n: int, posts: int,
                   repeats: int) -> Cell:
        await dep.flush()
        layout = factory(dep)
        now = int(time.time())
        loading = time.perf_counter()
        await layout.setup(follower_ids(n), now)
        loaded = time.perf_counter() - loading
        self.since_reset = 0
        since = now - ACTIVE_WINDOW_S
        await self.post(layout, since, n)  # warm-up: connections, first pipeline, script cache
        self.since_reset += 1
        runs = [await self.run(layout, posts, since, n) for _ in range(repeats)]
        cell = Cell(dep.name, layout.label, n, posts, runs)
        log(f"  {dep.name:20} {layout.label:28} N={n:>7,}  loaded in {loaded:5.1f}s  "
            f"store CPU {cell.per_post(lambda r: r.store.cpu_s) * 1000:8.2f} ms/post  "
            f"wall {cell.per_post(lambda r: r.wall_s) * 1000:8.2f} ms/post")
        return cell


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- report ---------------------------------------------------------------------------------


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(cells: list[Cell]) -> str:
    head = ["deployment", "layout", "N", "posts", "calls", "round trips", "node sends", "store CPU ms",
            "CPU spread", "µs/follower", "store cmd ms", "wall ms", "writes/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|"]
    for c in cells:
        cpu_ms = c.per_post(lambda r: r.store.cpu_s) * 1000
        cpu_runs = [run.store.cpu_s / run.posts * 1000 for run in c.runs]
        spread = f"{(max(cpu_runs) - min(cpu_runs)) / cpu_ms:.0%}" if len(cpu_runs) > 1 else "-"
        wall_s = c.per_post(lambda r: r.wall_s)
        row = [c.deployment, c.layout, f"{c.n:,}", str(c.posts),
               fmt(c.per_post(lambda r: r.cost.calls)), fmt(c.per_post(lambda r: r.cost.round_trips)),
               fmt(c.per_post(lambda r: r.cost.node_sends)), fmt(cpu_ms),
               spread, fmt(cpu_ms * 1000 / c.n),
               fmt(c.per_post(lambda r: r.store.cmd_usec) / 1000), fmt(wall_s * 1000), f"{c.n / wall_s:,.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def cheapest(cells: list[Cell]) -> str:
    """Per deployment and N, the layouts ordered by store CPU per post."""
    out = []
    groups: dict[tuple[str, int], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.deployment, c.n), []).append(c)
    for (deployment, n), group in groups.items():
        ranked = sorted(group, key=lambda c: c.per_post(lambda r: r.store.cpu_s))
        best = ranked[0].per_post(lambda r: r.store.cpu_s)
        order = ", ".join(f"{c.layout} ({c.per_post(lambda r: r.store.cpu_s) / best:.2f}x)" for c in ranked)
        out.append(f"- {deployment}, N={n:,}: {order}")
    return "\n".join(out)


def report(cells: list[Cell], repeats: int, elapsed_s: float) -> str:
    return "\n".join([
        "# Fan-out store cost per post by key layout",
        "",
        "Made by `fanline bench layouts --out docs/layout-costs.md` (`python -m fanline.bench.layouts`); "
        "why the bucketed layout was chosen: [scaling.md](scaling.md).",
        "",
        f"Per post, median of {repeats} repeat(s) of `posts` posts; every follower active; inboxes "
        f"pre-filled with {PREFILL} entries (cap {INBOX_CAP}, never reached: no trims); ≤{BATCH} "
        "followers per script call. store CPU = INFO cpu user+sys summed over masters (compare "
        "layouts by this; CPU spread = (max-min)/median over the repeats; µs/follower = store CPU / "
        "N); store cmd = INFO commandstats usec of EVALSHA + ZRANGE summed over masters (elapsed "
        "time, inflated on the cluster by 3 nodes + client sharing this machine's "
        f"{os.cpu_count()} cores); wall = one post as the worker sees it. Run took {elapsed_s:.0f} s.",
        "",
        table(cells),
        "",
        "Store CPU per post relative to the cheapest layout in each group:",
        "",
        cheapest(cells),
        "",
    ])


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    parser.add_argument("--quick", action="store_true", help="N up to 10,000, one repeat (<1 min)")
    parser.add_argument("--repeats", type=int, help="repeats per cell (default 3, 1 with --quick)")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        help="comma-separated follower counts (default by mode)")
    parser.add_argument("--deployments", default="cluster,single", help="cluster, single or both")
    args = parser.parse_args(argv)
    posts_by_n = QUICK_POSTS if args.quick else FULL_POSTS
    repeats = args.repeats or (1 if args.quick else 3)
    sizes = args.sizes or list(posts_by_n)

    def posts_for(n: int) -> int:
        # Sizes not in the table: about as many follower writes as the nearest listed size.
        if n in posts_by_n:
            return posts_by_n[n]
        near = min(posts_by_n, key=lambda k: abs(k - n))
        return max(3, posts_by_n[near] * near // n)

    started = time.perf_counter()
    driver = Driver()
    cells: list[Cell] = []
    for name in args.deployments.split(","):
        store: EmbeddedCluster | EmbeddedStore
        if name == "cluster":
            store = EmbeddedCluster(masters=3).start()
        elif name == "single":
            store = EmbeddedStore().start()
        else:
            parser.error(f"unknown deployment {name!r}")
        try:
            if isinstance(store, EmbeddedCluster):
                dep = await Deployment.start_cluster(store)
                factories = CLUSTER_LAYOUTS
            else:
                dep = await Deployment.start_single(store)
                factories = SINGLE_LAYOUTS
            try:
                await driver.prime(dep, factories[0], max(sizes))
                for n in sizes:
                    for factory in factories:
                        cells.append(await driver.cell(dep, factory, n, posts_for(n), repeats))
            finally:
                await dep.aclose()
        finally:
            store.stop()
    text = report(cells, repeats, time.perf_counter() - started)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    asyncio.run(main())
