"""The blocking client: one grpc channel per service."""

from __future__ import annotations

import time
from collections import namedtuple
from collections.abc import Callable, Generator, Sequence
from typing import Any

import grpc

from fanline_client._gen.feed.v1 import (
    fanout_pb2,
    fanout_pb2_grpc,
    post_pb2,
    post_pb2_grpc,
    timeline_pb2,
    timeline_pb2_grpc,
)
from fanline_client._options import (
    ClientOptions,
    Metadata,
    Targets,
    Tls,
    TokenSource,
    request_id_or_new,
    resolve_targets,
    with_bearer,
)
from fanline_client._watch import WatchBackoff


class _CallDetails(namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                               "wait_for_ready", "compression")),
                   grpc.ClientCallDetails):
    pass


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call. An interceptor rather than call
    credentials, which gRPC sends only over TLS: plain-text development suites need it too."""

    def __init__(self, token: TokenSource) -> None:
        self._token = token

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(details.method, details.timeout,
                            with_bearer(details.metadata, self._token), details.credentials,
                            details.wait_for_ready, getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation: Callable[..., Any],
                              client_call_details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any],
                               client_call_details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)


def _channel(target: str, tls: Tls | None, token: TokenSource | None,
             options: ClientOptions) -> tuple[grpc.Channel, grpc.Channel]:
    """(the channel to call through, the raw one to close)."""
    args = options.grpc_options()
    if tls is not None:
        if tls.server_name:
            args.append(("grpc.ssl_target_name_override", tls.server_name))
        raw = grpc.secure_channel(target, tls.credentials(), options=args)
    else:
        raw = grpc.insecure_channel(target, options=args)
    return (grpc.intercept_channel(raw, _Bearer(token)) if token is not None else raw), raw


class Client:
    """A blocking client of the three Fanline services.

    `Client(post_addr, fanout_addr, timeline_addr)` or `Client(Targets(...))`; `token`: a
    bearer token (or a zero-argument callable returning one, called per RPC) sent as
    `authorization: Bearer ...` on every call; `tls`: TLS (mutual with a client certificate),
    plain text when None; `options`: deadlines, retries, keepalive (ClientOptions).

    Every method raises `grpc.RpcError` when the call fails: `err.code()` is the
    `grpc.StatusCode` (INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED,
    UNAVAILABLE once retries are used up, DEADLINE_EXCEEDED, ...), `err.details()` the message.
    `timeout=` on a call can only shorten the configured deadline; `metadata=` adds metadata
    (an `authorization` entry of its own replaces the client's token for that call).

    The raw generated stubs are `posts`, `fanout` and `timeline` (same channels, token and
    service config). Close with `close()` or use it as a context manager.
    """

    def __init__(self, post: str | Targets, fanout: str | None = None,
                 timeline: str | None = None, *, token: TokenSource | None = None,
                 tls: Tls | None = None, options: ClientOptions | None = None) -> None:
        self.targets = resolve_targets(post, fanout, timeline)
        self.options = options or ClientOptions()
        self._raw: list[grpc.Channel] = []

        def open_(target: str) -> grpc.Channel:
            channel, raw = _channel(target, tls, token, self.options)
            self._raw.append(raw)
            return channel

        self.posts = post_pb2_grpc.PostServiceStub(open_(self.targets.post))
        self.fanout = fanout_pb2_grpc.FanoutServiceStub(open_(self.targets.fanout))
        self.timeline = timeline_pb2_grpc.TimelineServiceStub(open_(self.targets.timeline))

    def close(self) -> None:
        """Close the channels; calls in flight (a watch) end with CANCELLED."""
        for channel in self._raw:
            channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # PostService

    def create_post(self, author_id: str, text: str, *, request_id: str | None = None,
                    timeout: float | None = None, metadata: Metadata | None = None) -> post_pb2.Post:
        """Store a post (1..1000 characters) by `author_id` (the caller). Always idempotent:
        without a `request_id` a fresh one is made, so the channel's retries cannot post twice;
        give your own to make your own retries of this post safe too."""
        request = post_pb2.CreatePostRequest(author_id=author_id, text=text,
                                             request_id=request_id_or_new(request_id))
        reply: post_pb2.CreatePostResponse = self.posts.CreatePost(
            request, timeout=timeout, metadata=metadata)
        return reply.post

    def get_post(self, post_id: str, *, timeout: float | None = None,
                 metadata: Metadata | None = None) -> post_pb2.Post:
        """The post; NOT_FOUND if unknown or deleted."""
        reply: post_pb2.GetPostResponse = self.posts.GetPost(
            post_pb2.GetPostRequest(post_id=post_id), timeout=timeout, metadata=metadata)
        return reply.post

    def batch_get_posts(self, post_ids: Sequence[str], *, timeout: float | None = None,
                        metadata: Metadata | None = None) -> list[post_pb2.Post]:
        """The posts that exist (at most 1000 ids), in request order; unknown ids are skipped."""
        reply: post_pb2.BatchGetPostsResponse = self.posts.BatchGetPosts(
            post_pb2.BatchGetPostsRequest(post_ids=post_ids), timeout=timeout, metadata=metadata)
        return list(reply.posts)

    def delete_post(self, post_id: str, author_id: str, *, timeout: float | None = None,
                    metadata: Metadata | None = None) -> None:
        """Delete a post of `author_id` (the caller; PERMISSION_DENIED for anyone else's)."""
        self.posts.DeletePost(post_pb2.DeletePostRequest(post_id=post_id, author_id=author_id),
                              timeout=timeout, metadata=metadata)

    def list_author_posts(self, author_id: str, *, page_size: int = 0, page_token: str = "",
                          timeout: float | None = None,
                          metadata: Metadata | None = None) -> post_pb2.ListAuthorPostsResponse:
        """One page of an author's posts, newest first (`next_page_token` empty at the end)."""
        reply: post_pb2.ListAuthorPostsResponse = self.posts.ListAuthorPosts(
            post_pb2.ListAuthorPostsRequest(author_id=author_id, page_size=page_size,
                                            page_token=page_token),
            timeout=timeout, metadata=metadata)
        return reply

    # FanoutService

    def follow(self, follower_id: str, followee_id: str, *, timeout: float | None = None,
               metadata: Metadata | None = None) -> None:
        """`follower_id` (the caller) follows `followee_id`; idempotent."""
        self.fanout.Follow(fanout_pb2.FollowRequest(follower_id=follower_id,
                                                    followee_id=followee_id),
                           timeout=timeout, metadata=metadata)

    def unfollow(self, follower_id: str, followee_id: str, *, timeout: float | None = None,
                 metadata: Metadata | None = None) -> None:
        """`follower_id` (the caller) stops following `followee_id`; idempotent."""
        self.fanout.Unfollow(fanout_pb2.UnfollowRequest(follower_id=follower_id,
                                                        followee_id=followee_id),
                             timeout=timeout, metadata=metadata)

    def list_followers(self, user_id: str, *, page_size: int = 0, page_token: str = "",
                       timeout: float | None = None,
                       metadata: Metadata | None = None) -> fanout_pb2.ListFollowersResponse:
        reply: fanout_pb2.ListFollowersResponse = self.fanout.ListFollowers(
            fanout_pb2.ListFollowersRequest(user_id=user_id, page_size=page_size,
                                            page_token=page_token),
            timeout=timeout, metadata=metadata)
        return reply

    def list_following(self, user_id: str, *, page_size: int = 0, page_token: str = "",
                       timeout: float | None = None,
                       metadata: Metadata | None = None) -> fanout_pb2.ListFollowingResponse:
        reply: fanout_pb2.ListFollowingResponse = self.fanout.ListFollowing(
            fanout_pb2.ListFollowingRequest(user_id=user_id, page_size=page_size,
                                            page_token=page_token),
            timeout=timeout, metadata=metadata)
        return reply

    def get_author(self, user_id: str, *, timeout: float | None = None,
                   metadata: Metadata | None = None) -> fanout_pb2.GetAuthorResponse:
        """Follower and following counts and the author's delivery mode (push or pull)."""
        reply: fanout_pb2.GetAuthorResponse = self.fanout.GetAuthor(
            fanout_pb2.GetAuthorRequest(user_id=user_id), timeout=timeout, metadata=metadata)
        return reply

    def get_delivery(self, post_id: str, *, timeout: float | None = None,
                     metadata: Metadata | None = None) -> fanout_pb2.GetDeliveryResponse:
        """Where a post of the caller's is on its way to followers (NOT_FOUND until it was
        handed to fan-out)."""
        reply: fanout_pb2.GetDeliveryResponse = self.fanout.GetDelivery(
            fanout_pb2.GetDeliveryRequest(post_id=post_id), timeout=timeout, metadata=metadata)
        return reply

    # TimelineService

    def get_timeline(self, user_id: str, *, page_size: int = 0, page_token: str = "",
                     timeout: float | None = None,
                     metadata: Metadata | None = None) -> timeline_pb2.GetTimelineResponse:
        """One page of the caller's home timeline, newest first."""
        reply: timeline_pb2.GetTimelineResponse = self.timeline.GetTimeline(
            timeline_pb2.GetTimelineRequest(user_id=user_id, page_size=page_size,
                                            page_token=page_token),
            timeout=timeout, metadata=metadata)
        return reply

    def watch_timeline(self, user_id: str, resume_token: str = "", *,
                       metadata: Metadata | None = None
                       ) -> Generator[timeline_pb2.WatchTimelineResponse, None, None]:
        """Every response of the caller's timeline watch, for as long as it is iterated.

        A response without an event is a heartbeat; the first one means the watch is live.
        When the stream ends with UNAVAILABLE or RESOURCE_EXHAUSTED the watch is called again
        with the last resume_token received (so nothing is missed or repeated), after a
        backoff (ClientOptions.watch_*). Any other error is raised as grpc.RpcError; a stream
        the server ends cleanly ends the iteration. Closing the iterator (or the client)
        cancels the call."""
        backoff = WatchBackoff(self.options)
        token = resume_token
        while True:
            call = self.timeline.WatchTimeline(
                timeline_pb2.WatchTimelineRequest(user_id=user_id, resume_token=token),
                metadata=metadata)
            try:
                for response in call:
                    backoff.received()
                    token = response.resume_token or token
                    yield response
                return
            except grpc.RpcError as error:
                delay = backoff.delay_after(error)
            finally:
                call.cancel()  # no-op once ended; ends the RPC when the consumer stops early
            time.sleep(delay)
