"""Async gRPC stubs for a running suite, and the fan-out waits the benchmark needs."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc

from fanline.gen.feed.v1 import (
    fanout_pb2,
    fanout_pb2_grpc,
    post_pb2_grpc,
    timeline_pb2_grpc,
)

# The load generator opens several channels per service: one HTTP/2 connection serialises
# its frames in one client thread, which would cap the offered load rather than the server.
CHANNELS_PER_SERVICE = 4


@dataclass
class Stubs:
    channels: list[grpc.aio.Channel]
    posts: list[post_pb2_grpc.PostServiceStub]
    fanout: fanout_pb2_grpc.FanoutServiceStub
    timelines: list[timeline_pb2_grpc.TimelineServiceStub]

    @classmethod
    def connect(cls, post_addr: str, fanout_addr: str, timeline_addr: str) -> Stubs:
        channels: list[grpc.aio.Channel] = []

        def open_channel(addr: str) -> grpc.aio.Channel:
            # A local subchannel pool keeps grpc from sharing one connection among them.
            ch = grpc.aio.insecure_channel(addr, options=[("grpc.use_local_subchannel_pool", 1)])
            channels.append(ch)
            return ch

        posts = [post_pb2_grpc.PostServiceStub(open_channel(post_addr))
                 for i in range(CHANNELS_PER_SERVICE)]
        fanout = fanout_pb2_grpc.FanoutServiceStub(open_channel(fanout_addr))
        timelines = [timeline_pb2_grpc.TimelineServiceStub(open_channel(timeline_addr))
                     for i in range(CHANNELS_PER_SERVICE)]
        return cls(channels, posts, fanout, timelines)

    def post_stub(self, n: int) -> post_pb2_grpc.PostServiceStub:
        return self.posts[n % len(self.posts)]

    def timeline_stub(self, n: int) -> timeline_pb2_grpc.TimelineServiceStub:
        return self.timelines[n % len(self.timelines)]

    async def stats(self) -> fanout_pb2.GetFanoutStatsResponse:
        return await self.fanout.GetFanoutStats(fanout_pb2.GetFanoutStatsRequest(), timeout=10)

    async def delivery(self, post_id: str) -> fanout_pb2.GetDeliveryResponse:
        return await self.fanout.GetDelivery(
            fanout_pb2.GetDeliveryRequest(post_id=post_id), timeout=10
        )

    async def close(self) -> None:
        for ch in self.channels:
            await ch.close()


async def wait_drained(stubs: Stubs, published_at_least: int, timeout_s: float,
                       interval_s: float = 0.1) -> tuple[bool, fanout_pb2.GetFanoutStatsResponse]:
    """Wait until fan-out has accepted `published_at_least` posts and its queue is empty.

    Returns (drained, last stats). Polls rather than sleeping a guessed time.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        stats = await stubs.stats()
        if (stats.posts_published >= published_at_least and stats.queue_depth == 0
                and stats.queue_pending == 0):
            return True, stats
        if time.monotonic() > deadline:
            return False, stats
        await asyncio.sleep(interval_s)


async def wait_delivered(stubs: Stubs, post_id: str, timeout_s: float,
                         interval_s: float = 0.02) -> fanout_pb2.GetDeliveryResponse:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            reply = await stubs.delivery(post_id)
        except grpc.aio.AioRpcError as exc:
            # NOT_FOUND until the post service's hand-off reaches fan-out.
            if exc.code() is not grpc.StatusCode.NOT_FOUND:
                raise
        else:
            if reply.state in (fanout_pb2.DELIVERY_STATE_DELIVERED,
                               fanout_pb2.DELIVERY_STATE_FAILED):
                return reply
        if time.monotonic() > deadline:
            raise TimeoutError(f"post {post_id} not delivered within {timeout_s}s")
        await asyncio.sleep(interval_s)
