"""Typed gRPC clients for end-to-end tests against a running Suite."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from services.gen.feed.v1 import (
    fanout_pb2,
    fanout_pb2_grpc,
    post_pb2,
    post_pb2_grpc,
    timeline_pb2,
    timeline_pb2_grpc,
)
from services.launcher import Suite
from tests.conftest import wait_for


@dataclass
class Clients:
    posts: post_pb2_grpc.PostServiceStub
    fanout: fanout_pb2_grpc.FanoutServiceStub
    timeline: timeline_pb2_grpc.TimelineServiceStub

    @classmethod
    def of(cls, suite: Suite) -> Clients:
        return cls(
            post_pb2_grpc.PostServiceStub(grpc.insecure_channel(suite.post_addr)),
            fanout_pb2_grpc.FanoutServiceStub(grpc.insecure_channel(suite.fanout_addr)),
            timeline_pb2_grpc.TimelineServiceStub(grpc.insecure_channel(suite.timeline_addr)),
        )

    def post(self, author: str, text: str = "hello", request_id: str = "") -> post_pb2.Post:
        return self.posts.CreatePost(
            post_pb2.CreatePostRequest(author_id=author, text=text, request_id=request_id)
        ).post

    def follow(self, follower: str, followee: str) -> None:
        self.fanout.Follow(fanout_pb2.FollowRequest(follower_id=follower, followee_id=followee))

    def unfollow(self, follower: str, followee: str) -> None:
        self.fanout.Unfollow(fanout_pb2.UnfollowRequest(follower_id=follower, followee_id=followee))

    def page(self, user: str, size: int = 0, token: str = "") -> timeline_pb2.GetTimelineResponse:
        return self.timeline.GetTimeline(
            timeline_pb2.GetTimelineRequest(user_id=user, page_size=size, page_token=token)
        )

    def timeline_ids(self, user: str, size: int = 100) -> list[str]:
        """Every post id of the user's timeline, walking all pages."""
        ids: list[str] = []
        token = ""
        while True:
            reply = self.page(user, size, token)
            ids += [e.post.post_id for e in reply.entries]
            token = reply.next_page_token
            if not token:
                return ids

    def delivery(self, post_id: str) -> fanout_pb2.GetDeliveryResponse:
        return self.fanout.GetDelivery(fanout_pb2.GetDeliveryRequest(post_id=post_id))

    def wait_delivered(self, post_id: str, timeout_s: float = 15) -> fanout_pb2.GetDeliveryResponse:
        def done() -> fanout_pb2.GetDeliveryResponse | None:
            try:
                d = self.delivery(post_id)
            except grpc.RpcError as err:  # not handed to fan-out yet
                if err.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                    return None
                raise
            return d if d.state == fanout_pb2.DELIVERY_STATE_DELIVERED else None

        return wait_for(done, timeout_s, message=f"delivery of {post_id}")  # type: ignore[return-value]

    def stats(self) -> fanout_pb2.GetFanoutStatsResponse:
        return self.fanout.GetFanoutStats(fanout_pb2.GetFanoutStatsRequest())
