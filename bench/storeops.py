"""Set-up shortcuts and checks on a running suite's store from synchronous code (benchmark
scripts, end-to-end tests), through the storage layer, so they work the same on one node and
on a cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from fanline.common.config import load_settings
from fanline.common.store import Store, open_store
from fanline.common.store.layout import Layout

T = TypeVar("T")


class StoreOps:
    def __init__(self, env: Mapping[str, str]) -> None:
        """`env`: a suite's environment (`suite.env`), or any FANLINE_* settings."""
        self._settings = load_settings(env)
        self.layout = Layout(self._settings.store_buckets, self._settings.queue_partitions)

    def run(self, operation: Callable[[Store], Awaitable[T]]) -> T:
        async def go() -> T:
            store = await open_store(self._settings)
            try:
                return await operation(store)
            finally:
                await store.close()

        return asyncio.run(go())

    def activate(self, *users: str) -> None:
        """Mark users as recent readers (fan-out pushes to them)."""
        self.run(lambda store: store.inboxes.touch(users, int(time.time())))

    def add_followers(self, author: str, followers: list[str]) -> None:
        """The writes Follow makes, in bulk (big graphs)."""
        self.run(lambda store: store.graph.add_edges(author, followers))

    def inbox(self, user: str) -> list[int]:
        return self.run(lambda store: store.inboxes.all_ids(user))

    def node_url(self, key: str) -> str:
        """redis:// URL of the node serving `key` (to MONITOR it)."""
        return f"redis://{self.run(lambda store: _node(store, key))}"


async def _node(store: Store, key: str) -> str:
    return store.client.node_of(key)
