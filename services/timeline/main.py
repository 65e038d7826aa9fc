"""Timeline service process."""

from __future__ import annotations

from services.common import clients
from services.common.config import Settings
from services.common.pagination import PageTokens
from services.common.server import for_service
from services.common.store import open_store
from services.gen.feed.v1 import timeline_pb2, timeline_pb2_grpc
from services.timeline.reader import TimelineReader
from services.timeline.servicer import TimelineServicer


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
