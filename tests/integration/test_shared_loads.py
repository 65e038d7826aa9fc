"""Loads shared by concurrent readers survive the reader that started them, and a read never
waits past its caller's deadline.

The post service here is a real gRPC server whose BatchGetPosts waits until the test lets it
answer, so the order of events is the test's to choose.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest

from fanline.common import clients
from fanline.common.cache import SingleFlight
from fanline.common.config import Settings
from fanline.common.server import GrpcServer
from fanline.common.store import Store
from fanline.gen.feed.v1 import post_pb2, post_pb2_grpc
from fanline.timeline.cursor import FIRST_PAGE
from fanline.timeline.hydrate import Hydrator
from fanline.timeline.reader import TimelineReader
from tests.conftest import async_wait_for


@dataclass
class HeldPosts(post_pb2_grpc.PostServiceServicer):
    """Answers BatchGetPosts with a body for every id, once `release` is set."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    calls: int = 0

    async def BatchGetPosts(self, request: post_pb2.BatchGetPostsRequest,
                            context: grpc.aio.ServicerContext) -> post_pb2.BatchGetPostsResponse:
        self.calls += 1
        await self.release.wait()
        return post_pb2.BatchGetPostsResponse(posts=[
            post_pb2.Post(post_id=i, author_id="a", text=f"body {i}") for i in request.post_ids])


@pytest.fixture
async def held() -> AsyncIterator[tuple[HeldPosts, post_pb2_grpc.PostServiceStub]]:
    servicer = HeldPosts()
    server = GrpcServer("127.0.0.1:0", ["feed.v1.PostService"],
                        lambda s: post_pb2_grpc.add_PostServiceServicer_to_server(servicer, s),
                        grace_s=0.1)
    channel = clients.channel(f"127.0.0.1:{await server.start()}")
    yield servicer, clients.post_stub(channel)
    servicer.release.set()
    await channel.close()
    await server.stop()


async def test_readers_sharing_a_fetch_survive_the_one_that_started_it(held) -> None:
    posts, stub = held
    hydrator = Hydrator(stub, size=100, ttl_s=60, fetch_limit_s=5)
    first = asyncio.create_task(hydrator.bodies([7], timeout_s=5))
    await async_wait_for(lambda: posts.calls == 1, message="the first reader's fetch")
    others = [asyncio.create_task(hydrator.bodies([7], timeout_s=5)) for _ in range(20)]
    with pytest.raises(TimeoutError):  # its own deadline passes: only it gives up
        await hydrator.bodies([7], timeout_s=0.05)
    first.cancel()  # and the reader that started the fetch goes away
    posts.release.set()
    results = await asyncio.gather(*others)
    assert all(r[7].text == "body 7" for r in results)
    assert first.cancelled() and posts.calls == 1
    await hydrator.stop()


async def test_a_shared_load_outlives_every_caller_and_still_fills_the_cache() -> None:
    flights: SingleFlight[int] = SingleFlight(limit_s=5)
    gate = asyncio.Event()
    loads = 0

    async def load() -> int:
        nonlocal loads
        loads += 1
        await gate.wait()
        return 42

    callers = [asyncio.create_task(flights.run("k", load)) for _ in range(5)]
    await async_wait_for(lambda: loads == 1, message="the load started")
    for caller in callers[:4]:
        caller.cancel()
    gate.set()
    assert await callers[4] == (42, True)  # the fifth joined the first one's load
    assert loads == 1 and len(flights) == 0


async def test_a_shared_load_has_its_own_time_limit() -> None:
    flights: SingleFlight[int] = SingleFlight(limit_s=0.05)

    async def never() -> int:
        await asyncio.Event().wait()
        return 0

    with pytest.raises(TimeoutError):
        await flights.run("k", never, wait_s=5)
    assert len(flights) == 0  # the next caller starts afresh


async def test_a_read_never_waits_past_its_callers_deadline(held, store: Store,
                                                            settings: Settings) -> None:
    _, stub = held
    reader = TimelineReader(store, stub, settings.with_overrides(timeline_budget_ms=2000))
    await reader.start()
    try:
        await store.inboxes.touch(["r"], int(time.time()))
        await store.inboxes.rebuild("r", 0, [store.layout.compose_post_id(10**9, 0, 3)], 800)
        started = time.perf_counter()
        page = await reader.read("r", 10, FIRST_PAGE, caller_remaining_s=0.06)
        took = time.perf_counter() - started
        # The bodies never come (the post service holds them): the read gives up in time for
        # its caller, with a partial page, instead of the configured 2 s budget.
        assert page.partial and took < 0.2
        assert reader.budget_s(None) == 2.0 and reader.budget_s(0.06) == pytest.approx(0.05)
    finally:
        await reader.stop()
