"""The post service's outbox: hand-offs to fan-out that must not be lost.

CreatePost and DeletePost record a hand-off in the same transaction as the post change, try it
at once, and remove it when fan-out accepts. Anything fan-out did not accept (unreachable,
queue full) stays in the outbox and a drainer in every post replica retries it; fan-out
treats repeated hand-offs of one post as one, so two replicas retrying is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc
from redis.asyncio import Redis

from services.common import keys
from services.gen.feed.v1 import fanout_pb2, fanout_pb2_grpc, post_pb2

log = logging.getLogger(__name__)

HAND_OFF_TIMEOUT_S = 1.0
DRAIN_BATCH = 100


class Outbox:
    def __init__(
        self,
        redis: Redis,
        fanout: fanout_pb2_grpc.FanoutServiceStub,
        retry_ms: int,
        key: str = keys.outbox(),
    ) -> None:
        self._redis = redis
        self._fanout = fanout
        self._retry_ms = retry_ms
        self._key = key

    async def hand_off(self, entry: str) -> bool:
        """Try one hand-off; True (and the entry removed) once fan-out accepted it."""
        kind, _, rest = entry.partition(":")
        try:
            if kind == "publish":
                raw = await self._redis.get(keys.post(rest))
                if raw is not None:  # deleted before it was handed off: nothing to deliver
                    await self._fanout.PublishPost(
                        fanout_pb2.PublishPostRequest(post=post_pb2.Post.FromString(raw)),
                        timeout=HAND_OFF_TIMEOUT_S,
                    )
            elif kind == "retract":
                post_id, _, author_id = rest.partition(":")
                await self._fanout.RetractPost(
                    fanout_pb2.RetractPostRequest(post_id=post_id, author_id=author_id),
                    timeout=HAND_OFF_TIMEOUT_S,
                )
            else:
                log.error("dropping unknown outbox entry %r", entry)
        except grpc.aio.AioRpcError as exc:
            # Queue full is back-pressure working as intended, but operators must see it.
            level = logging.WARNING if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED else logging.INFO
            log.log(level, "hand-off %s not accepted (%s); will retry", entry, exc.code().name)
            return False
        await self._redis.zrem(self._key, entry)
        return True

    async def drain_once(self, now_ms: int) -> int:
        """Retry every due entry once; returns how many were accepted."""
        due = await self._redis.zrangebyscore(
            self._key, "-inf", now_ms, start=0, num=DRAIN_BATCH, withscores=True
        )
        accepted = 0
        for raw_entry, _due_ms in due:
            entry = raw_entry.decode()
            if await self.hand_off(entry):
                accepted += 1
            else:
                await self._redis.zadd(self._key, {entry: now_ms + self._retry_ms}, xx=True)
        return accepted

    async def pending(self) -> int:
        return int(await self._redis.zcard(self._key))

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
