"""TimelineService: proto in, domain call, proto out."""

from __future__ import annotations

import grpc

from services.common import validation
from services.common.pagination import PageTokens
from services.gen.feed.v1 import timeline_pb2, timeline_pb2_grpc
from services.timeline import cursor as cursors
from services.timeline.reader import TimelineReader


class TimelineServicer(timeline_pb2_grpc.TimelineServiceServicer):
    def __init__(self, reader: TimelineReader, tokens: PageTokens) -> None:
        self._reader = reader
        self._tokens = tokens

    async def GetTimeline(
        self, request: timeline_pb2.GetTimelineRequest, context: grpc.aio.ServicerContext
    ) -> timeline_pb2.GetTimelineResponse:
        user_id = validation.user_id(request.user_id, "user_id")
        page_size = validation.page_size(request.page_size)
        cursor = cursors.decode(self._tokens, user_id, request.page_token)
        page = await self._reader.read(user_id, page_size, cursor, context.time_remaining())
        token = cursors.encode(self._tokens, user_id, page.next_cursor) if page.next_cursor else ""
        return timeline_pb2.GetTimelineResponse(
            entries=[timeline_pb2.TimelineEntry(post=p, source=int(s)) for p, s in page.entries],
            next_page_token=token,
            partial=page.partial,
        )
