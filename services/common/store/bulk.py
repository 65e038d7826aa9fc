"""Bulk loads: a whole graph, its posts and inboxes written at once, in the storage layout, as
the services would have left them. For benchmarks and imports; never on a request path.

Commands are RESP-encoded here and pipelined over one raw connection per primary, each sent to
the node serving its key's slot. redis-py encodes every argument through several calls; for
millions of follow edges and inbox entries that was most of the load time, and a cluster
pipeline adds tens of microseconds per command on top. Ids repeat (an account is in many
follow sets, a post in many inboxes), so each is encoded once and reused. Only commands whose
reply is one line (integers, +OK) are sent; an error reply raises.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster

from fanline.common.store import records
from fanline.common.store.client import StoreClient
from fanline.common.store.layout import Layout, slot_of
from fanline.gen.feed.v1 import post_pb2

CHUNK = 5_000  # commands in flight per node before their replies are read


class _NodeWriter:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._buffer: list[bytes] = []
        self.queued = 0

    def send(self, tokens: Sequence[bytes]) -> None:
        self._buffer.append(b"*%d\r\n" % len(tokens))
        self._buffer += tokens
        self.queued += 1

    async def flush(self) -> None:
        if not self.queued:
            return
        self._writer.write(b"".join(self._buffer))
        await self._writer.drain()
        queued, self.queued = self.queued, 0
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
        try:
            await self.flush()
        finally:
            self._writer.close()
            await self._writer.wait_closed()


def _raw(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


class BulkLoad:
    """Open with `await BulkLoad.open(client, layout)`, write, then `await close()`."""

    def __init__(self, layout: Layout, writers: dict[str, _NodeWriter],
                 node_of_slot: Mapping[int, str]) -> None:
        self._layout = layout
        self._writers = writers
        self._node_of_slot = node_of_slot
        self._tokens: dict[str, bytes] = {}
        self._last_ids: dict[int, int] = {}

    @classmethod
    async def open(cls, client: StoreClient, layout: Layout) -> BulkLoad:
        redis = client.redis
        if isinstance(redis, RedisCluster):
            await redis.initialize()
            nodes = {n.name: n for n in redis.get_primaries()}
            node_of_slot = {s: redis.nodes_manager.get_node_from_slot(s).name
                            for s in range(16384)}
            kwargs: dict[str, Any] = dict(next(iter(nodes.values())).connection_kwargs)
            addresses = {name: (n.host, int(n.port)) for name, n in nodes.items()}
        else:
            kwargs = dict(redis.connection_pool.connection_kwargs)
            if "path" in kwargs or kwargs.get("ssl"):
                raise ValueError("bulk loads speak plain TCP only")
            addresses = {"": (kwargs.get("host", "127.0.0.1"), int(kwargs.get("port", 6379)))}
            node_of_slot = {s: "" for s in range(16384)}
        writers: dict[str, _NodeWriter] = {}
        for name, (host, port) in addresses.items():
            reader, writer = await asyncio.open_connection(host, port)
            node = writers[name] = _NodeWriter(reader, writer)
            if kwargs.get("password"):
                user = kwargs.get("username")
                node.send([_raw(b"AUTH"), *((_raw(user.encode()),) if user else ()),
                           _raw(kwargs["password"].encode())])
            if kwargs.get("db"):
                node.send([_raw(b"SELECT"), _raw(str(kwargs["db"]).encode())])
            await node.flush()
        return cls(layout, writers, node_of_slot)

    def _token(self, value: str) -> bytes:
        cached = self._tokens.get(value)
        if cached is None:
            cached = self._tokens[value] = _raw(value.encode())
        return cached

    async def _send(self, key: str, command: str, *args: bytes) -> None:
        node = self._writers[self._node_of_slot[slot_of(key)]]
        node.send([self._token(command), _raw(key.encode()), *args])
        if node.queued >= CHUNK:
            await node.flush()

    async def close(self) -> None:
        """Send what is queued and wait for every reply; raises if any write was refused."""
        try:
            for bucket, last in self._last_ids.items():
                # The bucket's id script continues above the loaded ids: later posts are newer.
                await self._send(self._layout.last_post_id(bucket), "SET",
                                 _raw(str(last).encode()))
        finally:
            errors = [e for e in await asyncio.gather(
                *(w.close() for w in self._writers.values()), return_exceptions=True) if e]
        if errors:
            raise errors[0]

    # -- what the services keep --------------------------------------------------------------

    async def follows(self, following: Mapping[str, Iterable[str]]) -> None:
        """Every edge, in the three places Follow writes it."""
        zero = self._token("0")
        followers: dict[str, list[str]] = defaultdict(list)
        for account, followees in following.items():
            members = list(followees)
            if not members:
                continue
            await self._send(self._layout.following(account), "ZADD",
                             *(t for f in members for t in (zero, self._token(f))))
            for followee in members:
                followers[followee].append(account)
        for author, fans in followers.items():
            await self._send(self._layout.followers(author), "ZADD",
                             *(t for f in fans for t in (zero, self._token(f))))
            by_bucket: dict[int, list[str]] = defaultdict(list)
            for fan in fans:
                by_bucket[self._layout.bucket_of_user(fan)].append(fan)
            for bucket, local in by_bucket.items():
                await self._send(self._layout.local_followers(bucket, author), "ZADD",
                                 *(t for f in local for t in (zero, self._token(f))))

    async def activate(self, accounts: Iterable[str], now_s: int) -> None:
        """Accounts that just read their timeline (fan-out pushes to them)."""
        stamp = self._token(str(now_s))
        for account in accounts:
            await self._send(self._layout.seen(account), "SET", stamp)

    def post_id(self, ms_since_epoch: int, author_id: str) -> int:
        """A new id for an author's post at this millisecond, increasing per bucket as the
        services' id script issues them."""
        bucket = self._layout.bucket_of_user(author_id)
        post_id = self._layout.compose_post_id(ms_since_epoch, 0, bucket)
        post_id = max(post_id, self._last_ids.get(bucket, -1) + self._layout.buckets)
        self._last_ids[bucket] = post_id
        return post_id

    async def posts(self, posts: Sequence[post_pb2.Post]) -> None:
        """Bodies and authors' lists (ids from `post_id`)."""
        by_author: dict[str, list[int]] = defaultdict(list)
        for post in posts:
            await self._send(self._layout.post(int(post.post_id)), "SET",
                             _raw(records.encode_post(post)))
            by_author[post.author_id].append(int(post.post_id))
        for author, ids in by_author.items():
            await self._send(self._layout.author_posts(author), "ZADD",
                             *(t for i in ids for t in (self._token(str(i)),) * 2))

    async def inbox(self, account: str, post_ids: Sequence[int]) -> None:
        if post_ids:
            await self._send(self._layout.inbox(account), "ZADD",
                             *(t for i in post_ids for t in (self._token(str(i)),) * 2))

    async def pull_authors(self, authors: Iterable[str]) -> None:
        """Authors in PULL mode (merged by timelines, not pushed), as a promotion leaves them."""
        for author in authors:
            bucket = self._layout.bucket_of_user(author)
            for key in (self._layout.merged_authors(bucket), self._layout.pull_authors(bucket)):
                await self._send(key, "SADD", self._token(author))
