"""Post service process."""

from __future__ import annotations

import asyncio

from fanline.common import clients
from fanline.common.clock import now_ms
from fanline.common.config import Settings
from fanline.common.pagination import PageTokens
from fanline.common.server import for_service
from fanline.common.store import open_store
from fanline.gen.feed.v1 import post_pb2, post_pb2_grpc
from fanline.post.outbox import Outbox
from fanline.post.posts import Posts
from fanline.post.servicer import PostServicer


async def run(settings: Settings) -> None:
    store = await open_store(settings)
    fanout_channel = clients.for_service(settings, settings.fanout_addr, "post")
    outbox = Outbox(store, clients.fanout_stub(fanout_channel), settings.outbox_retry_ms)
    servicer = PostServicer(Posts(store, outbox, settings.outbox_retry_ms),
                            PageTokens(settings.page_token_secrets))
    server = for_service(
        settings,
        settings.post_addr,
        [post_pb2.DESCRIPTOR.services_by_name["PostService"].full_name],
        lambda s: post_pb2_grpc.add_PostServiceServicer_to_server(servicer, s),
    )
    server.depend_on(store.client.healthy, "store")
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
        await store.close()
