"""Fan-out service (API) and fan-out worker processes."""

from __future__ import annotations

import asyncio

from fanline.common.config import Settings
from fanline.common.pagination import PageTokens
from fanline.common.server import for_service
from fanline.common.store import open_store
from fanline.fanout.app import build_fanout, build_worker
from fanline.fanout.servicer import FanoutServicer
from fanline.gen.feed.v1 import fanout_pb2, fanout_pb2_grpc


async def run_api(settings: Settings) -> None:
    store = await open_store(settings)
    await store.queue.ensure_groups()
    servicer = FanoutServicer(build_fanout(store, settings), PageTokens(settings.page_token_secrets))
    server = for_service(
        settings,
        settings.fanout_addr,
        [fanout_pb2.DESCRIPTOR.services_by_name["FanoutService"].full_name],
        lambda s: fanout_pb2_grpc.add_FanoutServiceServicer_to_server(servicer, s),
    )
    server.depend_on(store.client.healthy, "store")
    try:
        await server.run_until_signalled()
    finally:
        await store.close()


async def run_worker(settings: Settings) -> None:
    """A worker serves only gRPC health (for probes) next to its consume loop. On SIGTERM it
    finishes and acknowledges the batches in hand, takes no new entry, and exits."""
    store = await open_store(settings)
    worker = build_worker(store, settings)
    server = for_service(settings, settings.worker_addr, [], lambda s: None)
    server.depend_on(store.client.healthy, "store")
    stop = asyncio.Event()
    loop_task = asyncio.create_task(worker.run(stop))

    async def stop_consuming() -> None:
        stop.set()
        await loop_task

    server.on_shutdown(stop_consuming)
    try:
        await server.run_until_signalled()
    finally:
        await store.close()
