"""Typed gRPC clients for end-to-end tests against a running Suite.

Against a suite with FANLINE_AUTH=jwt, each helper call carries a token of the user it acts as
(the author who posts, the follower who follows, the reader who reads; an operator for
statistics and delivery records), and a raw stub call without metadata of its own carries the
suite's internal token, so tests that poke at any RPC still get through.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from fanline.common.auth import ADMIN, INTERNAL, Keys
from fanline.common.config import load_settings
from fanline.gen.feed.v1 import (
    fanout_pb2,
    fanout_pb2_grpc,
    post_pb2,
    post_pb2_grpc,
    timeline_pb2,
    timeline_pb2_grpc,
)
from fanline.launcher import Suite, open_channel
from tests.conftest import wait_for

Metadata = list[tuple[str, str]] | None


class _Details(namedtuple("_Details", ("method", "timeout", "metadata", "credentials",
                                       "wait_for_ready", "compression")),
               grpc.ClientCallDetails):
    pass


class _DefaultToken(grpc.UnaryUnaryClientInterceptor):
    """Adds `header()` to calls that carry no authorization of their own."""

    def __init__(self, header: Callable[[], tuple[str, str]]) -> None:
        self._header = header

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = list(details.metadata or ())
        if not any(k == "authorization" for k, _ in metadata):
            metadata.append(self._header())
            details = _Details(details.method, details.timeout, metadata, details.credentials,
                               details.wait_for_ready, getattr(details, "compression", None))
        return continuation(details, request)


@dataclass
class Clients:
    posts: post_pb2_grpc.PostServiceStub
    fanout: fanout_pb2_grpc.FanoutServiceStub
    timeline: timeline_pb2_grpc.TimelineServiceStub
    keys: Keys | None = None  # the suite's, when it requires tokens
    _tokens: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def of(cls, suite: Suite, default_token: bool = True) -> Clients:
        """`default_token`: calls without authorization of their own act as the suite and an
        operator (False: they go out bare, as an attacker's would)."""
        settings = load_settings(suite.env)
        keys = Keys(settings.jwt_secrets) if settings.auth == "jwt" else None

        def channel(addr: str) -> grpc.Channel:
            opened = open_channel(addr, suite.tls)
            if keys is None or not default_token:
                return opened
            return grpc.intercept_channel(opened, _DefaultToken(lambda: (
                "authorization", f"Bearer {keys.mint('fanline:tests', [INTERNAL, ADMIN])}")))

        return cls(
            post_pb2_grpc.PostServiceStub(channel(suite.post_addr)),
            fanout_pb2_grpc.FanoutServiceStub(channel(suite.fanout_addr)),
            timeline_pb2_grpc.TimelineServiceStub(channel(suite.timeline_addr)),
            keys,
        )

    def as_(self, user: str, scope: str = "") -> Metadata:
        """Metadata to act as `user` (with `scope`), or None when the suite trusts callers."""
        if self.keys is None:
            return None
        token = self._tokens.get((user, scope))
        if token is None:
            token = self._tokens[(user, scope)] = self.keys.mint(user, [scope] if scope else [])
        return [("authorization", f"Bearer {token}")]

    def post(self, author: str, text: str = "hello", request_id: str = "") -> post_pb2.Post:
        return self.posts.CreatePost(
            post_pb2.CreatePostRequest(author_id=author, text=text, request_id=request_id),
            metadata=self.as_(author),
        ).post

    def delete(self, post: post_pb2.Post) -> None:
        self.posts.DeletePost(post_pb2.DeletePostRequest(post_id=post.post_id,
                                                         author_id=post.author_id),
                              metadata=self.as_(post.author_id))

    def follow(self, follower: str, followee: str) -> None:
        self.fanout.Follow(fanout_pb2.FollowRequest(follower_id=follower, followee_id=followee),
                           metadata=self.as_(follower))

    def unfollow(self, follower: str, followee: str) -> None:
        self.fanout.Unfollow(fanout_pb2.UnfollowRequest(follower_id=follower, followee_id=followee),
                             metadata=self.as_(follower))

    def page(self, user: str, size: int = 0, token: str = "") -> timeline_pb2.GetTimelineResponse:
        return self.timeline.GetTimeline(
            timeline_pb2.GetTimelineRequest(user_id=user, page_size=size, page_token=token),
            metadata=self.as_(user),
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
        return self.fanout.GetDelivery(fanout_pb2.GetDeliveryRequest(post_id=post_id),
                                       metadata=self.as_("tests-operator", ADMIN))

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
        return self.fanout.GetFanoutStats(fanout_pb2.GetFanoutStatsRequest(),
                                          metadata=self.as_("tests-operator", ADMIN))
