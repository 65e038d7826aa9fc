"""The one place that dials other Fanline services."""

from __future__ import annotations

import json

import grpc

from services.common import telemetry
from services.gen.feed.v1 import fanout_pb2_grpc, post_pb2_grpc, timeline_pb2_grpc

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


def channel(addr: str) -> grpc.aio.Channel:
    target = addr if "://" in addr or addr[:1].isdigit() else f"dns:///{addr}"
    return grpc.aio.insecure_channel(
        target, options=CHANNEL_OPTIONS, interceptors=telemetry.client_interceptors()
    )


def post_stub(ch: grpc.aio.Channel) -> post_pb2_grpc.PostServiceStub:
    return post_pb2_grpc.PostServiceStub(ch)


def fanout_stub(ch: grpc.aio.Channel) -> fanout_pb2_grpc.FanoutServiceStub:
    return fanout_pb2_grpc.FanoutServiceStub(ch)


def timeline_stub(ch: grpc.aio.Channel) -> timeline_pb2_grpc.TimelineServiceStub:
    return timeline_pb2_grpc.TimelineServiceStub(ch)
