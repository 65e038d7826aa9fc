"""The one place that dials other Fanline services."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import grpc

from fanline.common import telemetry
from fanline.common.auth import InternalToken, internal_token
from fanline.common.tls import TlsFiles
from fanline.gen.feed.v1 import fanout_pb2_grpc, post_pb2_grpc, timeline_pb2_grpc

if TYPE_CHECKING:
    from fanline.common.config import Settings

# Round-robin over every address the name resolves to: with a headless Kubernetes Service
# that is every ready pod, so calls spread instead of pinning to one HTTP/2 connection.
_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})

CHANNEL_OPTIONS = [
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 20_000),
    # Reconnect soon after a peer comes back (the default backoff grows to two minutes).
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5_000),
]


class _Bearer(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds the service's own `fanline.internal` token to every call it makes."""

    def __init__(self, token: InternalToken) -> None:
        self._token = token

    async def intercept_unary_unary(self, continuation: Any, details: grpc.aio.ClientCallDetails,
                                    request: Any) -> Any:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), self._token.header())
        return await continuation(details._replace(metadata=metadata), request)


def channel(addr: str, token: InternalToken | None = None,
            tls: TlsFiles | None = None) -> grpc.aio.Channel:
    """A channel to another Fanline service; `token`: the caller's internal identity; `tls`:
    its certificate files (TLS, mutual with a CA)."""
    target = addr if "://" in addr or addr[:1].isdigit() else f"dns:///{addr}"
    interceptors: list[grpc.aio.ClientInterceptor] = [*telemetry.client_interceptors()]
    if token is not None:
        interceptors.append(_Bearer(token))
    if tls is not None:
        return grpc.aio.secure_channel(target, tls.channel_credentials(), options=CHANNEL_OPTIONS,
                                       interceptors=interceptors)
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS, interceptors=interceptors)


def for_service(settings: Settings, addr: str, service: str) -> grpc.aio.Channel:
    """The channel `service` uses to call the one at `addr`, as its settings say."""
    return channel(addr, internal_token(settings, service), settings.tls())


def post_stub(ch: grpc.aio.Channel) -> post_pb2_grpc.PostServiceStub:
    return post_pb2_grpc.PostServiceStub(ch)


def fanout_stub(ch: grpc.aio.Channel) -> fanout_pb2_grpc.FanoutServiceStub:
    return fanout_pb2_grpc.FanoutServiceStub(ch)


def timeline_stub(ch: grpc.aio.Channel) -> timeline_pb2_grpc.TimelineServiceStub:
    return timeline_pb2_grpc.TimelineServiceStub(ch)
