"""The asyncio client (grpc.aio): the same methods as Client, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any

import grpc
import grpc.aio

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


def _with_token(details: grpc.aio.ClientCallDetails, token: TokenSource) -> grpc.aio.ClientCallDetails:
    return details._replace(metadata=grpc.aio.Metadata(*with_bearer(details.metadata, token)))


# grpc.aio files an interceptor under the first call kind it implements, so each kind needs
# its own object.
class _BearerUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: TokenSource) -> None:
        self._token = token

    async def intercept_unary_unary(self, continuation: Callable[..., Awaitable[Any]],
                                    client_call_details: grpc.aio.ClientCallDetails,
                                    request: Any) -> Any:
        return await continuation(_with_token(client_call_details, self._token), request)


class _BearerStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, token: TokenSource) -> None:
        self._token = token

    async def intercept_unary_stream(self, continuation: Callable[..., Awaitable[Any]],
                                     client_call_details: grpc.aio.ClientCallDetails,
                                     request: Any) -> Any:
        return await continuation(_with_token(client_call_details, self._token), request)


def _channel(target: str, tls: Tls | None, token: TokenSource | None,
             options: ClientOptions) -> grpc.aio.Channel:
    args = options.grpc_options()
    interceptors: list[grpc.aio.ClientInterceptor] = (
        [_BearerUnary(token), _BearerStream(token)] if token is not None else [])
    if tls is not None:
        if tls.server_name:
            args.append(("grpc.ssl_target_name_override", tls.server_name))
        return grpc.aio.secure_channel(target, tls.credentials(), options=args,
                                       interceptors=interceptors)
    return grpc.aio.insecure_channel(target, options=args, interceptors=interceptors)


class AsyncClient:
    """The asyncio twin of `Client`: same constructor, same methods (awaited), same errors
    (`grpc.aio.AioRpcError`, a `grpc.RpcError`). Create it inside the running event loop;
    close with `await close()` or `async with`. `watch_timeline` is an async iterator."""

    def __init__(self, post: str | Targets, fanout: str | None = None,
                 timeline: str | None = None, *, token: TokenSource | None = None,
                 tls: Tls | None = None, options: ClientOptions | None = None) -> None:
        self.targets = resolve_targets(post, fanout, timeline)
        self.options = options or ClientOptions()
        self._channels = [_channel(t, tls, token, self.options)
                          for t in (self.targets.post, self.targets.fanout, self.targets.timeline)]
        self.posts = post_pb2_grpc.PostServiceStub(self._channels[0])
        self.fanout = fanout_pb2_grpc.FanoutServiceStub(self._channels[1])
        self.timeline = timeline_pb2_grpc.TimelineServiceStub(self._channels[2])

    async def close(self) -> None:
        """Close the channels; calls in flight (a watch) end with CANCELLED."""
        for channel in self._channels:
            await channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # PostService

    async def create_post(self, author_id: str, text: str, *, request_id: str | None = None,
                          timeout: float | None = None,
                          metadata: Metadata | None = None) -> post_pb2.Post:
        """See Client.create_post: a request_id is always sent (a fresh one if not given)."""
        request = post_pb2.CreatePostRequest(author_id=author_id, text=text,
                                             request_id=request_id_or_new(request_id))
        reply: post_pb2.CreatePostResponse = await self.posts.CreatePost(
            request, timeout=timeout, metadata=metadata)
        return reply.post

    async def get_post(self, post_id: str, *, timeout: float | None = None,
                       metadata: Metadata | None = None) -> post_pb2.Post:
        reply: post_pb2.GetPostResponse = await self.posts.GetPost(
            post_pb2.GetPostRequest(post_id=post_id), timeout=timeout, metadata=metadata)
        return reply.post

    async def batch_get_posts(self, post_ids: Sequence[str], *, timeout: float | None = None,
                              metadata: Metadata | None = None) -> list[post_pb2.Post]:
        reply: post_pb2.BatchGetPostsResponse = await self.posts.BatchGetPosts(
            post_pb2.BatchGetPostsRequest(post_ids=post_ids), timeout=timeout, metadata=metadata)
        return list(reply.posts)

    async def delete_post(self, post_id: str, author_id: str, *, timeout: float | None = None,
                          metadata: Metadata | None = None) -> None:
        await self.posts.DeletePost(
            post_pb2.DeletePostRequest(post_id=post_id, author_id=author_id),
            timeout=timeout, metadata=metadata)

    async def list_author_posts(self, author_id: str, *, page_size: int = 0,
                                page_token: str = "", timeout: float | None = None,
                                metadata: Metadata | None = None
                                ) -> post_pb2.ListAuthorPostsResponse:
        reply: post_pb2.ListAuthorPostsResponse = await self.posts.ListAuthorPosts(
            post_pb2.ListAuthorPostsRequest(author_id=author_id, page_size=page_size,
                                            page_token=page_token),
            timeout=timeout, metadata=metadata)
        return reply

    # FanoutService

    async def follow(self, follower_id: str, followee_id: str, *, timeout: float | None = None,
                     metadata: Metadata | None = None) -> None:
        await self.fanout.Follow(fanout_pb2.FollowRequest(follower_id=follower_id,
                                                          followee_id=followee_id),
                                 timeout=timeout, metadata=metadata)

    async def unfollow(self, follower_id: str, followee_id: str, *,
                       timeout: float | None = None, metadata: Metadata | None = None) -> None:
        await self.fanout.Unfollow(fanout_pb2.UnfollowRequest(follower_id=follower_id,
                                                              followee_id=followee_id),
                                   timeout=timeout, metadata=metadata)

    async def list_followers(self, user_id: str, *, page_size: int = 0, page_token: str = "",
                             timeout: float | None = None, metadata: Metadata | None = None
                             ) -> fanout_pb2.ListFollowersResponse:
        reply: fanout_pb2.ListFollowersResponse = await self.fanout.ListFollowers(
            fanout_pb2.ListFollowersRequest(user_id=user_id, page_size=page_size,
                                            page_token=page_token),
            timeout=timeout, metadata=metadata)
        return reply

    async def list_following(self, user_id: str, *, page_size: int = 0, page_token: str = "",
                             timeout: float | None = None, metadata: Metadata | None = None
                             ) -> fanout_pb2.ListFollowingResponse:
        reply: fanout_pb2.ListFollowingResponse = await self.fanout.ListFollowing(
            fanout_pb2.ListFollowingRequest(user_id=user_id, page_size=page_size,
                                            page_token=page_token),
            timeout=timeout, metadata=metadata)
        return reply

    async def get_author(self, user_id: str, *, timeout: float | None = None,
                         metadata: Metadata | None = None) -> fanout_pb2.GetAuthorResponse:
        reply: fanout_pb2.GetAuthorResponse = await self.fanout.GetAuthor(
            fanout_pb2.GetAuthorRequest(user_id=user_id), timeout=timeout, metadata=metadata)
        return reply

    async def get_delivery(self, post_id: str, *, timeout: float | None = None,
                           metadata: Metadata | None = None) -> fanout_pb2.GetDeliveryResponse:
        reply: fanout_pb2.GetDeliveryResponse = await self.fanout.GetDelivery(
            fanout_pb2.GetDeliveryRequest(post_id=post_id), timeout=timeout, metadata=metadata)
        return reply

    # TimelineService

    async def get_timeline(self, user_id: str, *, page_size: int = 0, page_token: str = "",
                           timeout: float | None = None, metadata: Metadata | None = None
                           ) -> timeline_pb2.GetTimelineResponse:
        reply: timeline_pb2.GetTimelineResponse = await self.timeline.GetTimeline(
            timeline_pb2.GetTimelineRequest(user_id=user_id, page_size=page_size,
                                            page_token=page_token),
            timeout=timeout, metadata=metadata)
        return reply

    async def watch_timeline(self, user_id: str, resume_token: str = "", *,
                             metadata: Metadata | None = None
                             ) -> AsyncGenerator[timeline_pb2.WatchTimelineResponse, None]:
        """See Client.watch_timeline: every response, resumed with the last resume_token
        after UNAVAILABLE or RESOURCE_EXHAUSTED. `aclose()` (or leaving `async for` with
        break in an `aclosing` block) cancels the call."""
        backoff = WatchBackoff(self.options)
        token = resume_token
        while True:
            call = self.timeline.WatchTimeline(
                timeline_pb2.WatchTimelineRequest(user_id=user_id, resume_token=token),
                metadata=metadata)
            try:
                async for response in call:
                    backoff.received()
                    token = response.resume_token or token
                    yield response
                return
            except grpc.RpcError as error:
                delay = backoff.delay_after(error)
            finally:
                call.cancel()  # no-op once ended; ends the RPC when the consumer stops early
            await asyncio.sleep(delay)
