"""The storage layer: the only code that knows the store (keys, stored formats, scripts,
slots). Services call named operations on a `Store`; the same code runs on one node and on a
Valkey/Redis Cluster.

    layout.py   where each key lives (buckets, queue partitions, hash tags), post id format
    records.py  each stored record's encoding
    scripts.py  every server-side script
    client.py   single node or cluster client: retries, durable writes, sharded pub/sub
    posts.py, graph.py, inboxes.py, queue.py   the operations, by what they are about
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from fanline.common.store import records
from fanline.common.store.client import StoreClient, is_outage
from fanline.common.store.graph import GraphRecords
from fanline.common.store.inboxes import InboxRecords
from fanline.common.store.layout import Layout
from fanline.common.store.posts import PostRecords
from fanline.common.store.queue import QueueRecords
from fanline.common.store.records import Event

if TYPE_CHECKING:
    from fanline.common.config import Settings

__all__ = ["LayoutMismatch", "Store", "is_outage", "open_store"]


class LayoutMismatch(RuntimeError):
    """The store was laid out with other bucket or partition counts than configured."""


class Store:
    def __init__(self, client: StoreClient, layout: Layout, queue_bound: int) -> None:
        self.client = client
        self.layout = layout
        self.posts = PostRecords(client, layout)
        self.graph = GraphRecords(client, layout)
        self.inboxes = InboxRecords(client, layout)
        self.queue = QueueRecords(client, layout, queue_bound)

    @classmethod
    async def open(cls, mode: str, url: str, buckets: int, partitions: int, queue_bound: int,
                   wait_replicas: int = 0, wait_ms: int = 500,
                   max_connections: int = 64, timeout_ms: int = 2000) -> Store:
        """Connect, check the store's layout against ours, load the scripts."""
        client = StoreClient.connect(mode, url, max_connections, wait_replicas, wait_ms,
                                     timeout_ms)
        try:
            store = cls(client, Layout(buckets, partitions), queue_bound)
            await client.ready()
            await store.check_layout()
            await client.load_scripts()
        except BaseException:
            await client.close()
            raise
        return store

    async def close(self) -> None:
        await self.client.close()

    async def check_layout(self) -> None:
        """Record the counts on first use; refuse counts that differ from the recorded ones
        (every key would point elsewhere)."""
        key = self.layout.record_key()
        _, _, recorded = await self.client.batch([
            ("HSETNX", key, "buckets", self.layout.buckets),
            ("HSETNX", key, "partitions", self.layout.partitions),
            ("HGETALL", key),
        ])
        counts = {records.text(k): int(v) for k, v in recorded.items()}
        if counts != {"buckets": self.layout.buckets, "partitions": self.layout.partitions}:
            raise LayoutMismatch(
                f"the store holds data laid out with FANLINE_STORE_BUCKETS={counts.get('buckets')} "
                f"and FANLINE_QUEUE_PARTITIONS={counts.get('partitions')}, but this process is "
                f"configured with {self.layout.buckets} and {self.layout.partitions}"
            )

    # -- events ------------------------------------------------------------------------------

    async def publish(self, event: Event) -> None:
        """Tell timeline processes (sharded pub/sub, on the author's bucket channel)."""
        bucket = self.layout.bucket_of_user(event.author_id)
        await self.client.command("SPUBLISH", self.layout.events(bucket), event.encode())

    async def events(self) -> AsyncIterator[Event | None]:
        """Every event, as it is published; None after each (re)subscription (events may have
        been missed before it: drop what they keep fresh)."""
        channels = [self.layout.events(b) for b in range(self.layout.buckets)]
        async for raw in self.client.subscribe(channels):
            if raw is None:
                yield None
                continue
            event = Event.decode(raw)
            if event is not None:
                yield event


async def open_store(settings: Settings, max_connections: int = 64) -> Store:
    """The store a Fanline process uses, as its settings describe it."""
    return await Store.open(
        settings.redis_mode, settings.redis_url, settings.store_buckets,
        settings.queue_partitions, settings.queue_max, settings.store_wait_replicas,
        settings.store_wait_ms, max_connections, settings.store_timeout_ms,
    )
