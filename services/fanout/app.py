"""Builds the fan-out domain and its workers from settings: the one place that wires them
(the service process, the worker process, tests and benchmarks all use it)."""

from __future__ import annotations

import os
import socket

from fanline.common.config import Settings
from fanline.common.store import Store
from fanline.fanout.graph import AuthorModes, FollowGraph
from fanline.fanout.queue import Consumer, FanoutQueue
from fanline.fanout.service import Fanout
from fanline.fanout.worker import Worker


def build_fanout(store: Store, settings: Settings) -> Fanout:
    modes = AuthorModes(store, settings.celebrity_threshold, settings.demote_ratio)
    graph = FollowGraph(store, modes, settings.inbox_max)
    async def author_of(post_id: int) -> str | None:
        post = await store.posts.get(post_id)
        return post.author_id if post is not None else None

    return Fanout(graph, modes, FanoutQueue(store), author_of)


def build_worker(store: Store, settings: Settings, name: str | None = None) -> Consumer:
    """A worker: the queue's consumer loop handing entries to the fan-out job handler."""
    fanout = build_fanout(store, settings)
    handler = Worker(store, settings, fanout.modes, fanout.queue)
    return Consumer(store, handler, name or f"{socket.gethostname()}-{os.getpid()}",
                    settings.worker_concurrency, settings.claim_idle_ms)
