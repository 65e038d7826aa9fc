"""PostService: proto in, domain call, proto out."""

from __future__ import annotations

import grpc

from services.common import validation
from services.common.errors import InvalidArgument
from services.common.pagination import PageTokens
from services.gen.feed.v1 import post_pb2, post_pb2_grpc
from services.post.posts import Posts

MAX_BATCH_IDS = 1000


class PostServicer(post_pb2_grpc.PostServiceServicer):
    def __init__(self, posts: Posts, tokens: PageTokens) -> None:
        self._posts = posts
        self._tokens = tokens

    async def CreatePost(
        self, request: post_pb2.CreatePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.CreatePostResponse:
        author_id = validation.user_id(request.author_id, "author_id")
        text = validation.text(request.text)
        request_id = validation.optional_request_id(request.request_id)
        return post_pb2.CreatePostResponse(post=await self._posts.create(author_id, text, request_id))

    async def GetPost(
        self, request: post_pb2.GetPostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.GetPostResponse:
        return post_pb2.GetPostResponse(
            post=await self._posts.get(validation.post_id(request.post_id)))

    async def BatchGetPosts(
        self, request: post_pb2.BatchGetPostsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.BatchGetPostsResponse:
        if len(request.post_ids) > MAX_BATCH_IDS:
            raise InvalidArgument("post_ids", f"at most {MAX_BATCH_IDS} ids per call")
        ids = [validation.post_id(p, f"post_ids[{i}]") for i, p in enumerate(request.post_ids)]
        return post_pb2.BatchGetPostsResponse(posts=await self._posts.batch_get(ids))

    async def DeletePost(
        self, request: post_pb2.DeletePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.DeletePostResponse:
        post_id = validation.post_id(request.post_id)
        author_id = validation.user_id(request.author_id, "author_id")
        await self._posts.delete(post_id, author_id)
        return post_pb2.DeletePostResponse()

    async def ListAuthorPosts(
        self, request: post_pb2.ListAuthorPostsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.ListAuthorPostsResponse:
        author_id = validation.user_id(request.author_id, "author_id")
        page_size = validation.page_size(request.page_size)
        before: int | None = None
        if request.page_token:
            before = int(self._tokens.parse(request.page_token, f"author-posts:{author_id}")["b"])
        posts, has_more = await self._posts.list_by_author(author_id, before, page_size)
        token = ""
        if has_more and posts:
            token = self._tokens.issue(f"author-posts:{author_id}", b=int(posts[-1].post_id))
        return post_pb2.ListAuthorPostsResponse(posts=posts, next_page_token=token)
