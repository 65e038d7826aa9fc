"""Python client of the Fanline services (post, fan-out, timeline), over gRPC.

    from fanline_client import Client, Targets

    with Client(Targets("127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"),
                token=my_token) as client:
        post = client.create_post("alice", "hello")
        page = client.get_timeline("alice")

`AsyncClient` is the same for asyncio. Failed calls raise `grpc.RpcError` (`err.code()` is a
`grpc.StatusCode`). The message classes are in `post_pb2`, `fanout_pb2` and `timeline_pb2`
(re-exported here); the .proto files ship in `fanline_client/protos/feed/v1/`.
"""

from fanline_client._aio import AsyncClient
from fanline_client._gen.feed.v1 import fanout_pb2, post_pb2, timeline_pb2
from fanline_client._options import (
    DEFAULT_TIMEOUTS,
    RETRIED_METHODS,
    ClientOptions,
    RetryPolicy,
    Targets,
    Tls,
    TokenSource,
)
from fanline_client._sync import Client
from fanline_client._version import __version__

__all__ = [
    "DEFAULT_TIMEOUTS",
    "RETRIED_METHODS",
    "AsyncClient",
    "Client",
    "ClientOptions",
    "RetryPolicy",
    "Targets",
    "Tls",
    "TokenSource",
    "__version__",
    "fanout_pb2",
    "post_pb2",
    "timeline_pb2",
]
