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
from fanline.timeline.watch import WatchHub


async def run(settings: Settings) -> None:
    store = await open_store(settings)
    post_channel = clients.for_service(settings, settings.post_addr, "timeline")
    reader = TimelineReader(store, clients.post_stub(post_channel), settings)
    tokens = PageTokens(settings.page_token_secrets)
    hub = WatchHub(store, reader, tokens, settings)
    reader.event_listeners.append(hub.on_event)
    await reader.start()
    await hub.start()
    servicer = TimelineServicer(reader, tokens, hub)
    server = for_service(
        settings,
        settings.timeline_addr,
        [timeline_pb2.DESCRIPTOR.services_by_name["TimelineService"].full_name],
        lambda s: timeline_pb2_grpc.add_TimelineServiceServicer_to_server(servicer, s),
    )
    server.depend_on(store.client.healthy, "store")
    server.on_shutdown(hub.drain)  # streams end first, then what they read from
    server.on_shutdown(reader.stop)
    try:
        await server.run_until_signalled()
    finally:
        await post_channel.close()
        await store.close()
