"""A Valkey Cluster master killed during fan-out: its replica takes over, no acknowledged post
is lost, no inbox entry is duplicated, and every call fails with UNAVAILABLE at worst; a cluster
that is down answers UNAVAILABLE, never INTERNAL or UNKNOWN."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest

from fanline.bench.storeops import StoreOps
from fanline.common.embedded import EmbeddedCluster
from fanline.gen.feed.v1 import fanout_pb2, post_pb2, timeline_pb2
from fanline.launcher import Suite
from tests.conftest import wait_for
from tests.e2e.helpers import Clients

pytestmark = pytest.mark.e2e

AUTHORS = ["fo-alice", "fo-bob", "fo-carol"]
FOLLOWERS = [f"fo-f{i:03d}" for i in range(300)]  # spread over every bucket, so every master
POSTS = 36


@pytest.fixture
def replicated_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    env = {
        "FANLINE_STORE_WAIT_REPLICAS": "1",  # acknowledged writes are on the replica too
        "FANLINE_STORE_WAIT_MS": "2000",
        "FANLINE_FANOUT_BATCH_SIZE": "40",
        "FANLINE_FANOUT_BATCH_PAUSE_MS": "30",  # keeps fan-out busy while the master dies
        "FANLINE_CLAIM_IDLE_MS": "2000",
        "FANLINE_LOG_LEVEL": "WARNING",
    }
    suite = Suite(workers=2, extra_env=env, log_dir=str(tmp_path_factory.mktemp("logs")),
                  cluster_masters=3, cluster_replicas=1)
    with suite:
        yield suite


class Poster(threading.Thread):
    """Creates posts one after another; a post counts as acknowledged once CreatePost
    returned it. Refused calls are retried with the same request id (so never twice)."""

    def __init__(self, api: Clients) -> None:
        super().__init__(daemon=True)
        self.api = api
        self.acknowledged: list[post_pb2.Post] = []
        self.failures: Counter[grpc.StatusCode] = Counter()

    def run(self) -> None:
        for n in range(POSTS):
            request = post_pb2.CreatePostRequest(author_id=AUTHORS[n % len(AUTHORS)],
                                                 text=f"post {n}", request_id=f"fo-{n}")
            for _ in range(200):
                try:
                    self.acknowledged.append(self.api.posts.CreatePost(request, timeout=10).post)
                    break
                except grpc.RpcError as err:
                    self.failures[err.code()] += 1  # type: ignore[attr-defined]


def test_master_killed_mid_fanout_loses_and_duplicates_nothing(replicated_suite: Suite) -> None:
    suite = replicated_suite
    cluster = suite.store
    assert isinstance(cluster, EmbeddedCluster)
    api = Clients.of(suite)
    ops = StoreOps(suite.env)
    for author in AUTHORS:
        ops.add_followers(author, FOLLOWERS)
    ops.activate(*FOLLOWERS)
    # The master serving alice's bucket: her posts, their outbox entries and a third of the
    # inboxes live there.
    victim = int(ops.node_url(ops.layout.author_posts(AUTHORS[0])).rsplit(":", 1)[1])
    replica = cluster.replicas_of(victim)[0]

    poster = Poster(api)
    poster.start()
    wait_for(lambda: len(poster.acknowledged) >= POSTS // 3
             and api.stats().queue_pending > 0, 60, message="fan-out under way")
    cluster.kill(victim, signal.SIGKILL)
    cluster.wait_healthy(30)
    assert replica in cluster.masters()
    poster.join(timeout=120)
    assert not poster.is_alive()

    # Every acknowledged post exists and was delivered to every follower exactly once.
    acknowledged = poster.acknowledged
    assert len({p.post_id for p in acknowledged}) == len(acknowledged) == POSTS
    for post in acknowledged:
        assert api.posts.GetPost(post_pb2.GetPostRequest(post_id=post.post_id)).post == post
        delivery = api.wait_delivered(post.post_id, timeout_s=60)
        assert delivery.inbox_writes == len(FOLLOWERS) + 1, post.post_id  # counted once
    expected = {int(p.post_id) for p in acknowledged}
    for follower in FOLLOWERS[::10]:
        inbox = ops.inbox(follower)
        assert set(inbox) == expected and len(inbox) == len(expected), follower
        # Reads right after the failover may be partial (a source that missed its budget while
        # clients learned the new topology); a complete page follows.
        page = wait_for(lambda f=follower: (r := api.page(f, 50)).partial is False and r, 15,
                        message="a complete timeline page")
        ids = [e.post.post_id for e in page.entries]  # type: ignore[attr-defined]
        assert len(ids) == len(set(ids)) == POSTS
    # While the master was away, refused calls said "retry", nothing else.
    assert set(poster.failures) <= {grpc.StatusCode.UNAVAILABLE}, poster.failures

    # A master and its replica both gone: part of the keyspace has no owner, the cluster is
    # down, and calls say UNAVAILABLE rather than INTERNAL or UNKNOWN.
    for port in [replica, *cluster.replicas_of(replica)]:
        cluster.kill(port, signal.SIGKILL)
    calls = [
        lambda: api.posts.CreatePost(post_pb2.CreatePostRequest(author_id=AUTHORS[0], text="x"),
                                     timeout=15),
        lambda: api.timeline.GetTimeline(timeline_pb2.GetTimelineRequest(user_id=FOLLOWERS[0]),
                                         timeout=15),
        lambda: api.fanout.GetFanoutStats(fanout_pb2.GetFanoutStatsRequest(), timeout=15),
    ]

    def refused_all() -> bool:
        codes = []
        for call in calls:
            try:
                call()
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as err:
                codes.append(err.code())  # type: ignore[attr-defined]
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
        return set(codes) == {grpc.StatusCode.UNAVAILABLE}

    wait_for(refused_all, 30, interval_s=0.2, message="the down cluster refusing every call")
