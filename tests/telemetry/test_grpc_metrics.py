"""RED metrics of every RPC: one rpc.server.duration point per call on the server, one
rpc.client.duration point per call on the caller, each labelled with its status code."""

from __future__ import annotations

import grpc
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from fanline.common import clients
from fanline.common.pagination import PageTokens
from fanline.common.server import GrpcServer
from fanline.common.store import Store
from fanline.gen.feed.v1 import post_pb2, post_pb2_grpc
from fanline.post.posts import Posts
from fanline.post.servicer import PostServicer
from tests.conftest import points


async def test_every_call_is_counted_timed_and_labelled_with_its_code(
        reader: InMemoryMetricReader, store: Store) -> None:
    created = await store.posts.create("alice", "measured", "", 0)
    assert created.post is not None
    servicer = PostServicer(Posts(store, None, 500), PageTokens(["k" * 32]))  # type: ignore[arg-type]
    server = GrpcServer("127.0.0.1:0", ["feed.v1.PostService"],
                        lambda s: post_pb2_grpc.add_PostServiceServicer_to_server(servicer, s),
                        grace_s=1)
    channel = clients.channel(f"127.0.0.1:{await server.start()}")
    stub = post_pb2_grpc.PostServiceStub(channel)
    try:
        for post_id in (created.post.post_id, created.post.post_id, "9", "x"):
            try:
                await stub.GetPost(post_pb2.GetPostRequest(post_id=post_id))
            except grpc.aio.AioRpcError:
                pass  # NOT_FOUND and INVALID_ARGUMENT are counted below
    finally:
        await channel.close()
        await server.stop()
    base = (("rpc.method", "GetPost"), ("rpc.service", "feed.v1.PostService"),
            ("rpc.system", "grpc"))
    for side in ("server", "client"):
        counts = {dict(key)["rpc.grpc.status_code"]: point.count
                  for key, point in points(reader, f"rpc.{side}.duration").items()
                  if set(base) <= set(key)}
        assert counts == {grpc.StatusCode.OK.value[0]: 2, grpc.StatusCode.NOT_FOUND.value[0]: 1,
                          grpc.StatusCode.INVALID_ARGUMENT.value[0]: 1}, side
