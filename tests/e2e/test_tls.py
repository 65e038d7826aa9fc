"""Mutual TLS on every listener and between the services, with certificates from
`fanline certs`: the suite works end to end, and clients without a certificate the CA issued
are turned away before any RPC."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fanline.common.embedded import free_port
from fanline.common.tls import TlsFiles, make_dev_certs
from fanline.gen.feed.v1 import (
    fanout_pb2,
    fanout_pb2_grpc,
    post_pb2,
    post_pb2_grpc,
    timeline_pb2,
    timeline_pb2_grpc,
)
from fanline.launcher import Suite, healthy
from tests.conftest import wait_for
from tests.e2e.test_auth import AUTH_ENV, bearer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    out = subprocess.run([sys.executable, "-m", "fanline.cli", "certs", str(directory)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert f"FANLINE_TLS_CA={directory / 'ca.crt'}" in out
    return directory


@pytest.fixture(scope="module")
def suite(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    env = {**AUTH_ENV, "FANLINE_TLS_CERT": str(certs / "tls.crt"),
           "FANLINE_TLS_KEY": str(certs / "tls.key"), "FANLINE_TLS_CA": str(certs / "ca.crt")}
    with Suite(workers=1, extra_env=env, log_dir=str(tmp_path_factory.mktemp("tls-logs"))) as s:
        yield s


def test_the_suite_works_over_mutual_tls(suite: Suite) -> None:
    assert suite.tls is not None
    credentials = suite.tls.channel_credentials()
    posts = post_pb2_grpc.PostServiceStub(grpc.secure_channel(suite.post_addr, credentials))
    fanout = fanout_pb2_grpc.FanoutServiceStub(grpc.secure_channel(suite.fanout_addr, credentials))
    timeline = timeline_pb2_grpc.TimelineServiceStub(
        grpc.secure_channel(suite.timeline_addr, credentials))
    fanout.Follow(fanout_pb2.FollowRequest(follower_id="tls-b", followee_id="tls-a"),
                  metadata=bearer("tls-b"))
    timeline.GetTimeline(timeline_pb2.GetTimelineRequest(user_id="tls-b"), metadata=bearer("tls-b"))
    post = posts.CreatePost(post_pb2.CreatePostRequest(author_id="tls-a", text="sealed"),
                            metadata=bearer("tls-a")).post
    # Delivered through post -> fan-out (mTLS) and read through timeline -> post (mTLS).
    wait_for(lambda: [e.post.text for e in timeline.GetTimeline(
        timeline_pb2.GetTimelineRequest(user_id="tls-b"), metadata=bearer("tls-b")).entries]
        == ["sealed"], 15, message="the post in tls-b's timeline")
    assert post.post_id


def refused(addr: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    channel = (grpc.secure_channel(addr, credentials) if credentials is not None
               else grpc.insecure_channel(addr))
    with channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
        except grpc.RpcError as err:
            return err.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


def test_clients_without_a_certificate_from_the_ca_are_turned_away(suite: Suite,
                                                                   tmp_path: Path) -> None:
    assert suite.tls is not None and suite.tls.ca is not None
    for name in ("post", "fanout", "timeline", "worker-0"):
        addr = suite.addr_of(name)
        assert refused(addr, suite.tls.channel_credentials()) is grpc.StatusCode.OK
        assert refused(addr, None) is grpc.StatusCode.UNAVAILABLE  # plain text
        # TLS that trusts the server but presents no certificate of its own.
        assert refused(addr, grpc.ssl_channel_credentials(root_certificates=suite.tls.ca)) \
            is grpc.StatusCode.UNAVAILABLE
    # A certificate from another CA, even for the right names.
    other = make_dev_certs(tmp_path / "other")
    foreign = TlsFiles.read(str(other["tls.crt"]), str(other["tls.key"]), str(other["ca.crt"]))
    assert foreign is not None
    mixed = grpc.ssl_channel_credentials(root_certificates=suite.tls.ca, private_key=foreign.key,
                                         certificate_chain=foreign.cert)
    assert refused(suite.post_addr, mixed) is grpc.StatusCode.UNAVAILABLE
    # And a client that trusts only the other CA does not trust our servers.
    assert refused(suite.post_addr, foreign.channel_credentials()) is grpc.StatusCode.UNAVAILABLE


def test_the_plain_health_port_answers_health_and_nothing_else(suite: Suite) -> None:
    port = free_port()
    extra = suite.add_worker("worker-probed", FANLINE_HEALTH_PORT=str(port))
    suite.wait_healthy(names=["worker-probed"])
    health = f"127.0.0.1:{port}"
    assert healthy(health)  # plain text, as a Kubernetes gRPC probe asks
    with grpc.insecure_channel(health) as channel:
        with pytest.raises(grpc.RpcError) as err:
            post_pb2_grpc.PostServiceStub(channel).GetPost(post_pb2.GetPostRequest(post_id="1"),
                                                           timeout=3)
    assert err.value.code() is grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
    assert extra.poll() is None
