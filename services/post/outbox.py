"""The post service's outbox: hand-offs to fan-out that must not be lost.

CreatePost and DeletePost record a hand-off in the same script as the post change (the outbox
of the post's bucket), try it at once, and remove it when fan-out accepts. Anything fan-out did
not accept (unreachable, queue full) stays in the outbox and a drainer in every post replica
retries it; fan-out treats repeated hand-offs of one post as one, so two replicas retrying is
harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from fanline.common.store import Store
from fanline.common.store.records import HandOff, OutboxEntry
from fanline.gen.feed.v1 import fanout_pb2, fanout_pb2_grpc

log = logging.getLogger(__name__)

HAND_OFF_TIMEOUT_S = 1.0
DRAIN_BATCH = 100  # per bucket and drain


class Outbox:
    def __init__(self, store: Store, fanout: fanout_pb2_grpc.FanoutServiceStub,
                 retry_ms: int) -> None:
        self._store = store
        self._fanout = fanout
        self._retry_ms = retry_ms

    async def hand_off(self, entry: OutboxEntry) -> bool:
        """Try one hand-off; True (and the entry removed) once fan-out accepted it."""
        try:
            if entry.kind is HandOff.PUBLISH:
                post = await self._store.posts.get(entry.post_id)
                if post is not None:  # deleted before it was handed off: nothing to deliver
                    await self._fanout.PublishPost(fanout_pb2.PublishPostRequest(post=post),
                                                   timeout=HAND_OFF_TIMEOUT_S)
            else:
                await self._fanout.RetractPost(
                    fanout_pb2.RetractPostRequest(post_id=str(entry.post_id),
                                                  author_id=entry.author_id),
                    timeout=HAND_OFF_TIMEOUT_S,
                )
        except grpc.aio.AioRpcError as exc:
            # Queue full is back-pressure working as intended, but operators must see it.
            level = logging.WARNING if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED else logging.INFO
            log.log(level, "hand-off %s not accepted (%s); will retry", entry.encode(), exc.code().name)
            return False
        await self._store.posts.outbox_done(entry)
        return True

    async def drain_once(self, now_ms: int) -> int:
        """Retry every due entry once; returns how many were accepted."""
        accepted = 0
        for entry in await self._store.posts.outbox_due(now_ms, DRAIN_BATCH):
            if await self.hand_off(entry):
                accepted += 1
            else:
                await self._store.posts.outbox_later(entry, now_ms + self._retry_ms)
        return accepted

    async def pending(self) -> int:
        return await self._store.posts.outbox_pending()

    async def run(self, stop: asyncio.Event, clock_ms: Callable[[], int]) -> None:
        while not stop.is_set():
            try:
                await self.drain_once(clock_ms())
            except Exception:
                log.exception("outbox drain failed; retrying")
            try:
                await asyncio.wait_for(stop.wait(), self._retry_ms / 1000)
            except TimeoutError:
                pass
