"""FanoutService: proto in, domain call, proto out."""

from __future__ import annotations

import grpc

from fanline.common import auth
from fanline.common.pagination import PageTokens
from fanline.common.store.records import DeliveryState
from fanline.common.validation import Fields
from fanline.fanout.service import Fanout
from fanline.gen.feed.v1 import fanout_pb2, fanout_pb2_grpc

_STATES: dict[DeliveryState | None, int] = {
    DeliveryState.QUEUED: fanout_pb2.DELIVERY_STATE_QUEUED,
    DeliveryState.DELIVERING: fanout_pb2.DELIVERY_STATE_DELIVERING,
    DeliveryState.DELIVERED: fanout_pb2.DELIVERY_STATE_DELIVERED,
    DeliveryState.FAILED: fanout_pb2.DELIVERY_STATE_FAILED,
}


class FanoutServicer(fanout_pb2_grpc.FanoutServiceServicer):
    def __init__(self, fanout: Fanout, tokens: PageTokens) -> None:
        self._fanout = fanout
        self._tokens = tokens

    async def Follow(
        self, request: fanout_pb2.FollowRequest, context: grpc.aio.ServicerContext
    ) -> fanout_pb2.FollowResponse:
        with Fields() as v:
            follower = v.user_id(request.follower_id, "follower_id")
            followee = v.user_id(request.followee_id, "followee_id")
        await self._fanout.follow(follower, followee)
        return fanout_pb2.FollowResponse()

    async def Unfollow(
        self, request: fanout_pb2.UnfollowRequest, context: grpc.aio.ServicerContext
    ) -> fanout_pb2.UnfollowResponse:
        with Fields() as v:
            follower = v.user_id(request.follower_id, "follower_id")
            followee = v.user_id(request.followee_id, "followee_id")
        await self._fanout.unfollow(follower, followee)
        return fanout_pb2.UnfollowResponse()

    async def _page(self, request: fanout_pb2.ListFollowersRequest, direction: str
                    ) -> tuple[list[str], str]:
        viewer = auth.viewer()
        with Fields() as v:
            user = v.user_id(request.user_id, "user_id")
            size = v.page_size(request.page_size)
            scope = f"{direction}:{user}"
            after: str | None = None
            if request.page_token:
                after = v.check(lambda: self._tokens.parse_str(
                    request.page_token, scope, viewer, "a"), None)
        ids, more = await self._fanout.graph.page(user, direction, after, size)
        token = self._tokens.issue(scope, viewer, a=ids[-1]) if more and ids else ""
        return ids, token

    async def ListFollowers(
        self, request: fanout_pb2.ListFollowersRequest, context: grpc.aio.ServicerContext
    ) -> fanout_pb2.ListFollowersResponse:
        ids, token = await self._page(request, "followers")
        return fanout_pb2.ListFollowersResponse(user_ids=ids, next_page_token=token)

    async def ListFollowing(
        self, request: fanout_pb2.ListFollowingRequest, context: grpc.aio.ServicerContext
    ) -> fanout_pb2.ListFollowingResponse:
        ids, token = await self._page(request, "following")  # type: ignore[arg-type]
        return fanout_pb2.ListFollowingResponse(user_ids=ids, next_page_token=token)

    async def GetAuthor(
        self, request: fanout_pb2.GetAuthorRequest, context: grpc.aio.ServicerContext
    ) -> fanout_pb2.GetAuthorResponse:
        with Fields() as v:
            user = v.user_id(request.user_id, "user_id")
        info = await self._fanout.author(user)
        return fanout_pb2.GetAuthorResponse(
            user_id=info.user_id,
            follower_count=info.follower_count,
            following_count=info.following_count,
            delivery_mode=int(info.mode),
        )

    async def PublishPost(
        self, request: fanout_pb2.PublishPostRequest, context: grpc.aio.ServicerContext
    ) -> fanout_pb2.PublishPostResponse:
        with Fields() as v:
            post = request.post
            if not request.HasField("post"):
                v.add("post", "is required")
            else:
                post_id = v.post_id(post.post_id, "post.post_id")
                author = v.user_id(post.author_id, "post.author_id")
                created_ms = (v.timestamp_ms(post.create_time, "post.create_time")
                              if post.HasField("create_time") else 0)
        await self._fanout.publish(post_id, author, created_ms)
        return fanout_pb2.PublishPostResponse()

    async def RetractPost(
        self, request: fanout_pb2.RetractPostRequest, context: grpc.aio.ServicerContext
    ) -> fanout_pb2.RetractPostResponse:
        with Fields() as v:
            post_id = v.post_id(request.post_id)
            author = v.user_id(request.author_id, "author_id")
        await self._fanout.retract(post_id, author)
        return fanout_pb2.RetractPostResponse()

    async def GetFanoutStats(
        self, request: fanout_pb2.GetFanoutStatsRequest, context: grpc.aio.ServicerContext
    ) -> fanout_pb2.GetFanoutStatsResponse:
        s = await self._fanout.stats()
        return fanout_pb2.GetFanoutStatsResponse(
            posts_published=s.posts_published,
            inbox_writes=s.inbox_writes,
            write_amplification=s.write_amplification,
            queue_depth=s.depth,
            posts_push=s.posts_push,
            posts_pull=s.posts_pull,
            inbox_writes_skipped_inactive=s.skipped_inactive,
            queue_pending=s.pending,
            queue_reclaimed=s.reclaimed,
            inbox_rebuilds=s.inbox_rebuilds,
            publish_refused_queue_full=s.refused_queue_full,
        )

    async def GetDelivery(
        self, request: fanout_pb2.GetDeliveryRequest, context: grpc.aio.ServicerContext
    ) -> fanout_pb2.GetDeliveryResponse:
        with Fields() as v:
            post_id = v.post_id(request.post_id)
        record = await self._fanout.delivery(post_id, auth.current())
        return fanout_pb2.GetDeliveryResponse(
            post_id=request.post_id,
            delivery_mode=record.mode,
            state=_STATES.get(record.state, fanout_pb2.DELIVERY_STATE_UNSPECIFIED),
            followers_targeted=record.targeted,
            inbox_writes=record.writes,
            lag_ms=record.lag_ms,
            trace_id=record.trace_id,
        )
