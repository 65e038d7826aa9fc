"""Timeline service process."""

from __future__ import annotations

from fanline.common import clients
from fanline.common.config import Settings
from fanline.common.pagination import PageTokens
from fanline.common.server import for_service
from fanline.common.store import open_store
from fanline.gen.feed.v1 import timeline_pb2, timeline_pb2_grpc
from fanline.timeline.reader import TimelineReader
from fanline.timeline.servicer import TimelineServicer


async def run(settings: Settings) -> None:
    store = await open_store(settings)
    post_channel = clients.for_service(settings, settings.post_addr, "timeline")
    reader = TimelineReader(store, clients.post_stub(post_channel), settings)
    await reader.start()
    servicer = TimelineServicer(reader, PageTokens(settings.page_token_secrets))
    server = for_service(
        settings,
        settings.timeline_addr,
        [timeline_pb2.DESCRIPTOR.services_by_name["TimelineService"].full_name],
        lambda s: timeline_pb2_grpc.add_TimelineServiceServicer_to_server(servicer, s),
    )
    server.depend_on(store.client.healthy, "store")
    server.on_shutdown(reader.stop)
    try:
        await server.run_until_signalled()
    finally:
        await post_channel.close()
        await store.close()
