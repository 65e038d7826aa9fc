"""PostService: proto in, domain call, proto out."""

from __future__ import annotations

import grpc

from services.common import validation
from services.common.errors import InvalidArgument
from services.common.pagination import PageTokens
from services.gen.feed.v1 import post_pb2, post_pb2_grpc
from services.post.outbox import Outbox
from services.post.store import PostStore, now_ms, outbox_publish, outbox_retract

MAX_BATCH_IDS = 1000


class PostServicer(post_pb2_grpc.PostServiceServicer):
    def __init__(self, store: PostStore, outbox: Outbox, tokens: PageTokens, retry_ms: int) -> None:
        self._store = store
        self._outbox = outbox
        self._tokens = tokens
        self._retry_ms = retry_ms

    async def CreatePost(
        self, request: post_pb2.CreatePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.CreatePostResponse:
        author_id = validation.user_id(request.author_id, "author_id")
        text = validation.text(request.text)
        request_id = validation.optional_request_id(request.request_id)
        created = await self._store.create(
            author_id, text, request_id, retry_at_ms=now_ms() + self._retry_ms
        )
        if created.is_new:
            # Hand off now; if fan-out is away the outbox drainer retries later.
            await self._outbox.hand_off(outbox_publish(created.post.post_id))
        return post_pb2.CreatePostResponse(post=created.post)

    async def GetPost(
        self, request: post_pb2.GetPostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.GetPostResponse:
        validation.post_id(request.post_id)
        return post_pb2.GetPostResponse(post=await self._store.get(request.post_id))

    async def BatchGetPosts(
        self, request: post_pb2.BatchGetPostsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.BatchGetPostsResponse:
        if len(request.post_ids) > MAX_BATCH_IDS:
            raise InvalidArgument("post_ids", f"at most {MAX_BATCH_IDS} ids per call")
        for index, post_id in enumerate(request.post_ids):
            validation.post_id(post_id, f"post_ids[{index}]")
        posts = await self._store.batch_get(list(request.post_ids))
        return post_pb2.BatchGetPostsResponse(posts=posts)

    async def DeletePost(
        self, request: post_pb2.DeletePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.DeletePostResponse:
        validation.post_id(request.post_id)
        author_id = validation.user_id(request.author_id, "author_id")
        await self._store.delete(request.post_id, author_id, retry_at_ms=now_ms() + self._retry_ms)
        await self._outbox.hand_off(outbox_retract(request.post_id, author_id))
        return post_pb2.DeletePostResponse()

    async def ListAuthorPosts(
        self, request: post_pb2.ListAuthorPostsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.ListAuthorPostsResponse:
        author_id = validation.user_id(request.author_id, "author_id")
        page_size = validation.page_size(request.page_size)
        before: int | None = None
        if request.page_token:
            before = int(self._tokens.parse(request.page_token, f"author-posts:{author_id}")["b"])
        posts, has_more = await self._store.list_author_posts(author_id, before, page_size)
        token = ""
        if has_more and posts:
            token = self._tokens.issue(f"author-posts:{author_id}", b=int(posts[-1].post_id))
        return post_pb2.ListAuthorPostsResponse(posts=posts, next_page_token=token)
