"""An in-process stack on a real Valkey (one node, or a 3-master cluster): post and fan-out
gRPC servers on free ports, a worker driven step by step, and the timeline reader called
directly."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from fanline.common import clients
from fanline.common.config import Settings
from fanline.common.pagination import PageTokens
from fanline.common.server import GrpcServer
from fanline.common.store import Store
from fanline.fanout.app import build_fanout, build_worker
from fanline.fanout.queue import Consumer
from fanline.fanout.service import Fanout
from fanline.fanout.servicer import FanoutServicer
from fanline.gen.feed.v1 import fanout_pb2_grpc, post_pb2, post_pb2_grpc
from fanline.post.outbox import Outbox
from fanline.post.posts import Posts
from fanline.post.servicer import PostServicer
from fanline.timeline.cursor import FIRST_PAGE, Cursor
from fanline.timeline.reader import TimelinePage, TimelineReader


@dataclass
class Stack:
    store: Store
    settings: Settings
    fanout: Fanout
    worker: Consumer
    posts: post_pb2_grpc.PostServiceStub
    fanout_stub: fanout_pb2_grpc.FanoutServiceStub
    reader: TimelineReader
    extras: list[Any] = field(default_factory=list)

    async def drain(self, limit: int = 10_000) -> int:
        """Run the worker until the queue is empty; returns the entries processed."""
        done = 0
        while (await self.store.queue.stats()).depth and done < limit:
            done += await self.worker.step(block_ms=10)
        return done

    async def post(self, author: str, text: str = "text", request_id: str = "") -> post_pb2.Post:
        reply = await self.posts.CreatePost(
            post_pb2.CreatePostRequest(author_id=author, text=text, request_id=request_id)
        )
        return reply.post

    async def activate(self, *users: str) -> None:
        """Mark users as recent readers, so fan-out pushes to them."""
        await self.store.inboxes.touch(users, int(time.time()))

    async def page(self, user: str, size: int = 20, cursor: Cursor = FIRST_PAGE) -> TimelinePage:
        return await self.reader.read(user, size, cursor)

    async def all_ids(self, user: str, size: int = 7) -> list[int]:
        ids: list[int] = []
        cursor: Cursor | None = FIRST_PAGE
        while cursor is not None:
            page = await self.page(user, size, cursor)
            ids += [int(p.post_id) for p, _ in page.entries]
            cursor = page.next_cursor
        return ids

    async def inbox(self, user: str) -> list[int]:
        return await self.store.inboxes.all_ids(user)


@pytest.fixture
async def make_stack(store: Store, settings: Settings) -> AsyncIterator[Any]:
    made: list[tuple[GrpcServer, GrpcServer, Any, Any, TimelineReader]] = []

    async def build(**overrides: Any) -> Stack:
        s = settings.with_overrides(**overrides)
        # Settings the store was opened with (the queue bound) follow the overrides too.
        stack_store = Store(store.client, store.layout, s.queue_max)
        await stack_store.queue.ensure_groups()
        fanout = build_fanout(stack_store, s)
        tokens = PageTokens(s.page_token_secrets)
        fanout_server = GrpcServer(
            "127.0.0.1:0", ["feed.v1.FanoutService"],
            lambda srv: fanout_pb2_grpc.add_FanoutServiceServicer_to_server(
                FanoutServicer(fanout, tokens), srv),
            grace_s=1,
        )
        fanout_port = await fanout_server.start()
        fanout_channel = clients.channel(f"127.0.0.1:{fanout_port}")
        outbox = Outbox(stack_store, clients.fanout_stub(fanout_channel), s.outbox_retry_ms)
        post_servicer = PostServicer(Posts(stack_store, outbox, s.outbox_retry_ms), tokens)
        post_server = GrpcServer(
            "127.0.0.1:0", ["feed.v1.PostService"],
            lambda srv: post_pb2_grpc.add_PostServiceServicer_to_server(post_servicer, srv),
            grace_s=1,
        )
        post_port = await post_server.start()
        post_channel = clients.channel(f"127.0.0.1:{post_port}")
        reader = TimelineReader(stack_store, clients.post_stub(post_channel), s)
        await reader.start()
        worker = build_worker(stack_store, s, "w1")
        made.append((fanout_server, post_server, fanout_channel, post_channel, reader))
        return Stack(stack_store, s, fanout, worker, clients.post_stub(post_channel),
                     clients.fanout_stub(fanout_channel), reader)

    yield build
    for fanout_server, post_server, fanout_channel, post_channel, reader in made:
        await reader.stop()
        await fanout_channel.close()
        await post_channel.close()
        await post_server.stop()
        await fanout_server.stop()
