"""Typed gRPC clients for end-to-end tests against a running Suite.

Against a suite with FANLINE_AUTH=jwt, each helper call carries a token of the user it acts as
(the author who posts, the follower who follows, the reader who reads; an operator for
statistics and delivery records), and a raw stub call without metadata of its own carries the
suite's internal token, so tests that poke at any RPC still get through.
"""

from __future__ import annotations

import queue
import threading
import time
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

    def watch(self, user: str, resume_token: str = "",
              options: list[tuple[str, Any]] | None = None, addr: str = "") -> Watch:
        """A live WatchTimeline stream of `user`, read in a thread; returns once the watch is
        live (its first, empty response has arrived). `options`/`addr`: a channel of its own
        (e.g. a small receive window to play a slow reader)."""
        stub = self.timeline
        if options is not None:
            stub = timeline_pb2_grpc.TimelineServiceStub(grpc.insecure_channel(addr, options))
        call = stub.WatchTimeline(
            timeline_pb2.WatchTimelineRequest(user_id=user, resume_token=resume_token),
            metadata=self.as_(user))
        watch = Watch(call)
        first = watch.next(15)
        assert first.WhichOneof("event") is None, first
        return watch

    def stats(self) -> fanout_pb2.GetFanoutStatsResponse:
        return self.fanout.GetFanoutStats(fanout_pb2.GetFanoutStatsRequest(),
                                          metadata=self.as_("tests-operator", ADMIN))


class Watch:
    """A WatchTimeline stream read by a thread into a queue, so tests can wait with timeouts.
    `received` stamps each response with the monotonic time it arrived."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.token = ""
        self.error: grpc.RpcError | None = None
        self._queue: queue.Queue[tuple[float, Any]] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for response in self.call:
                self._queue.put((time.monotonic(), response))
        except grpc.RpcError as err:
            self._queue.put((time.monotonic(), err))

    def next_stamped(self, timeout_s: float = 10) -> tuple[float, timeline_pb2.WatchTimelineResponse]:
        """The next response and when it arrived; raises the stream's error if it ended."""
        try:
            at, item = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"no response within {timeout_s}s") from None
        if isinstance(item, grpc.RpcError):
            self.error = item
            raise item
        self.token = item.resume_token
        return at, item

    def next(self, timeout_s: float = 10) -> timeline_pb2.WatchTimelineResponse:
        return self.next_stamped(timeout_s)[1]

    def next_event(self, timeout_s: float = 10) -> timeline_pb2.WatchTimelineResponse:
        """The next response that carries an event (heartbeats skipped)."""
        deadline = time.monotonic() + timeout_s
        while True:
            response = self.next(max(0.01, deadline - time.monotonic()))
            if response.WhichOneof("event") is not None:
                return response

    def entries(self, count: int, timeout_s: float = 10) -> list[str]:
        """The post ids of the next `count` entries."""
        ids: list[str] = []
        while len(ids) < count:
            response = self.next_event(timeout_s)
            if response.WhichOneof("event") == "entry":
                ids.append(response.entry.post.post_id)
        return ids

    def ended_with(self, timeout_s: float = 10) -> grpc.StatusCode:
        """Read until the stream ends; its status code."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.next(max(0.01, deadline - time.monotonic()))
            except grpc.RpcError as err:
                return err.code()  # type: ignore[attr-defined,no-any-return]

    def quiet(self, for_s: float) -> bool:
        """True if no event arrives within `for_s` (heartbeats allowed)."""
        try:
            self.next_event(for_s)
        except AssertionError:
            return True
        return False

    def close(self) -> None:
        self.call.cancel()
        self._thread.join(5)
