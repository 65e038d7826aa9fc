"""PostService: proto in, domain call, proto out."""

from __future__ import annotations

import grpc

from fanline.common import auth
from fanline.common.pagination import PageTokens
from fanline.common.validation import Fields
from fanline.gen.feed.v1 import post_pb2, post_pb2_grpc
from fanline.post.posts import Posts

MAX_BATCH_IDS = 1000


class PostServicer(post_pb2_grpc.PostServiceServicer):
    def __init__(self, posts: Posts, tokens: PageTokens) -> None:
        self._posts = posts
        self._tokens = tokens

    async def CreatePost(
        self, request: post_pb2.CreatePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.CreatePostResponse:
        with Fields() as v:
            author_id = v.user_id(request.author_id, "author_id")
            text = v.text(request.text)
            request_id = v.optional_request_id(request.request_id)
        return post_pb2.CreatePostResponse(post=await self._posts.create(author_id, text, request_id))

    async def GetPost(
        self, request: post_pb2.GetPostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.GetPostResponse:
        with Fields() as v:
            post_id = v.post_id(request.post_id)
        return post_pb2.GetPostResponse(post=await self._posts.get(post_id))

    async def BatchGetPosts(
        self, request: post_pb2.BatchGetPostsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.BatchGetPostsResponse:
        with Fields() as v:
            if len(request.post_ids) > MAX_BATCH_IDS:
                v.add("post_ids", f"at most {MAX_BATCH_IDS} ids per call")
            else:
                ids = [v.post_id(p, f"post_ids[{i}]") for i, p in enumerate(request.post_ids)]
        return post_pb2.BatchGetPostsResponse(posts=await self._posts.batch_get(ids))

    async def DeletePost(
        self, request: post_pb2.DeletePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.DeletePostResponse:
        with Fields() as v:
            post_id = v.post_id(request.post_id)
            author_id = v.user_id(request.author_id, "author_id")
        await self._posts.delete(post_id, author_id)
        return post_pb2.DeletePostResponse()

    async def ListAuthorPosts(
        self, request: post_pb2.ListAuthorPostsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.ListAuthorPostsResponse:
        viewer = auth.viewer()
        with Fields() as v:
            author_id = v.user_id(request.author_id, "author_id")
            page_size = v.page_size(request.page_size)
            scope = f"author-posts:{author_id}"
            before: int | None = None
            if request.page_token:
                before = v.check(lambda: self._tokens.parse_int(
                    request.page_token, scope, viewer, "b"), None)
        posts, has_more = await self._posts.list_by_author(author_id, before, page_size)
        token = ""
        if has_more and posts:
            token = self._tokens.issue(scope, viewer, b=int(posts[-1].post_id))
        return post_pb2.ListAuthorPostsResponse(posts=posts, next_page_token=token)
