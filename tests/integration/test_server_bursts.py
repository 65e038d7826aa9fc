"""The one server bootstrap under a burst of new calls: every call of a burst bigger than
gRPC's default pending-call limit (1,000) is served, none cancelled (thousands of watchers
reconnect at once when a timeline pod drains)."""

from __future__ import annotations

import asyncio

import grpc

from fanline.common.server import GrpcServer
from fanline.gen.feed.v1 import timeline_pb2, timeline_pb2_grpc

BURST = 1500
PER_CHANNEL = 100


class _Live(timeline_pb2_grpc.TimelineServiceServicer):
    async def WatchTimeline(self, request: timeline_pb2.WatchTimelineRequest,
                            context: grpc.aio.ServicerContext) -> None:
        await context.write(timeline_pb2.WatchTimelineResponse(resume_token=request.user_id))
        await asyncio.Event().wait()  # held open until the client cancels


async def test_a_burst_of_streams_is_served_whole() -> None:
    server = GrpcServer("127.0.0.1:0", ["feed.v1.TimelineService"],
                        lambda s: timeline_pb2_grpc.add_TimelineServiceServicer_to_server(_Live(), s),
                        grace_s=1)
    port = await server.start()
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}")
                for _ in range(BURST // PER_CHANNEL)]
    calls = [timeline_pb2_grpc.TimelineServiceStub(channels[i // PER_CHANNEL]).WatchTimeline(
        timeline_pb2.WatchTimelineRequest(user_id=str(i))) for i in range(BURST)]
    try:
        first = await asyncio.wait_for(
            asyncio.gather(*(c.read() for c in calls), return_exceptions=True), 60)
        failed = [r for r in first if not isinstance(r, timeline_pb2.WatchTimelineResponse)]
        assert not failed, f"{len(failed)} of {BURST} calls failed, e.g. {failed[0]!r}"
        assert sorted(int(r.resume_token) for r in first) == list(range(BURST))  # type: ignore[union-attr]
    finally:
        for call in calls:
            call.cancel()
        for channel in channels:
            await channel.close()
        await server.stop()
