"""Post service process."""

from __future__ import annotations

import asyncio

from services.common import clients
from services.common.config import Settings
from services.common.pagination import PageTokens
from services.common.redis import connect, preload_scripts
from services.common.server import for_service
from services.gen.feed.v1 import post_pb2, post_pb2_grpc
from services.post.outbox import Outbox
from services.post.servicer import PostServicer
from services.post.store import PostStore, now_ms


async def run(settings: Settings) -> None:
    redis = connect(settings.redis_url)
    fanout_channel = clients.channel(settings.fanout_addr)
    outbox = Outbox(redis, clients.fanout_stub(fanout_channel), settings.outbox_retry_ms)
    servicer = PostServicer(
        PostStore(redis), outbox, PageTokens(settings.page_token_secret), settings.outbox_retry_ms
    )
    await preload_scripts(redis)
    server = for_service(
        settings,
        settings.post_addr,
        [post_pb2.DESCRIPTOR.services_by_name["PostService"].full_name],
        lambda s: post_pb2_grpc.add_PostServiceServicer_to_server(servicer, s),
    )
    stop_draining = asyncio.Event()
    drainer = asyncio.create_task(outbox.run(stop_draining, now_ms))

    async def stop_drainer() -> None:
        stop_draining.set()
        await drainer

    server.on_shutdown(stop_drainer)
    try:
        await server.run_until_signalled()
    finally:
        await fanout_channel.close()
        await redis.aclose()
