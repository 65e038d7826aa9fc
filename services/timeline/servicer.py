"""TimelineService: proto in, domain call, proto out."""

from __future__ import annotations

import grpc

from fanline.common import auth
from fanline.common.clock import now_ms
from fanline.common.pagination import PageTokens
from fanline.common.validation import Fields
from fanline.gen.feed.v1 import timeline_pb2, timeline_pb2_grpc
from fanline.timeline import cursor as cursors
from fanline.timeline import resume
from fanline.timeline.reader import TimelineReader
from fanline.timeline.resume import Position
from fanline.timeline.watch import WatchHub


class TimelineServicer(timeline_pb2_grpc.TimelineServiceServicer):
    def __init__(self, reader: TimelineReader, tokens: PageTokens, hub: WatchHub) -> None:
        self._reader = reader
        self._tokens = tokens
        self._hub = hub

    async def GetTimeline(
        self, request: timeline_pb2.GetTimelineRequest, context: grpc.aio.ServicerContext
    ) -> timeline_pb2.GetTimelineResponse:
        viewer = auth.viewer()
        with Fields() as v:
            user_id = v.user_id(request.user_id, "user_id")
            page_size = v.page_size(request.page_size)
            cursor = v.check(lambda: cursors.decode(self._tokens, viewer, user_id,
                                                    request.page_token), cursors.FIRST_PAGE)
        page = await self._reader.read(user_id, page_size, cursor, context.time_remaining())
        token = (cursors.encode(self._tokens, viewer, user_id, page.next_cursor)
                 if page.next_cursor else "")
        return timeline_pb2.GetTimelineResponse(
            entries=[timeline_pb2.TimelineEntry(post=p, source=int(s)) for p, s in page.entries],
            next_page_token=token,
            partial=page.partial,
        )

    async def WatchTimeline(
        self, request: timeline_pb2.WatchTimelineRequest, context: grpc.aio.ServicerContext
    ) -> None:
        # Sends with context.write (interceptor.py): returns only when the stream ends.
        viewer = auth.viewer()
        with Fields() as v:
            user_id = v.user_id(request.user_id, "user_id")
            position = v.check(
                lambda: resume.decode(self._tokens, viewer, user_id, request.resume_token)
                if request.resume_token else Position.starting_at(now_ms()), Position(0, 0))
        await self._hub.serve(user_id, viewer, position, context)
