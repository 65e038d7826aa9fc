"""Figures for the hybrid's safeguards, measured on the suite as real processes:

- writes saved by skipping inactive followers (a 10,000-follower author, 50% inactive);
- store reads caused by 200 concurrent readers of one fresh celebrity post;
- lag of small posts while a 100,000-follower fan-out is running (p50/p99).

Run: `python -m fanline.bench.hybrid [--big-followers 100000]`.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

from fanline.bench.monitor import CommandMonitor
from fanline.bench.stats import percentile
from fanline.bench.storeops import StoreOps
from fanline.gen.feed.v1 import (
    fanout_pb2,
    fanout_pb2_grpc,
    post_pb2,
    post_pb2_grpc,
    timeline_pb2,
    timeline_pb2_grpc,
)
from fanline.launcher import Suite


def load_followers(ops: StoreOps, author: str, followers: list[str], active: bool) -> None:
    """The writes Follow makes, in bulk (Follow one by one would take minutes)."""
    ops.add_followers(author, followers)
    if active:
        ops.activate(*followers)


def wait_delivered(fanout: fanout_pb2_grpc.FanoutServiceStub, post_id: str,
                   timeout_s: float = 300) -> fanout_pb2.GetDeliveryResponse:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            reply = fanout.GetDelivery(fanout_pb2.GetDeliveryRequest(post_id=post_id))
        except grpc.RpcError:
            reply = None
        if reply and reply.state == fanout_pb2.DELIVERY_STATE_DELIVERED:
            return reply
        time.sleep(0.005)
    raise TimeoutError(post_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big-followers", type=int, default=100_000)
    parser.add_argument("--small-posts", type=int, default=200)
    args = parser.parse_args()
    env = {"FANLINE_CELEBRITY_THRESHOLD": str(10**9), "FANLINE_LOG_LEVEL": "WARNING"}
    with Suite(workers=1, extra_env=env) as suite:
        client = StoreOps(suite.env)
        posts = post_pb2_grpc.PostServiceStub(grpc.insecure_channel(suite.post_addr))
        fanout = fanout_pb2_grpc.FanoutServiceStub(grpc.insecure_channel(suite.fanout_addr))

        # 1. Inactive skip: half of 10,000 followers read recently.
        followers = [f"sk{i:05d}" for i in range(10_000)]
        load_followers(client, "skipper", followers[:5000], active=True)
        load_followers(client, "skipper", followers[5000:], active=False)
        before = fanout.GetFanoutStats(fanout_pb2.GetFanoutStatsRequest())
        post = posts.CreatePost(post_pb2.CreatePostRequest(author_id="skipper", text="x")).post
        d = wait_delivered(fanout, post.post_id)
        after = fanout.GetFanoutStats(fanout_pb2.GetFanoutStatsRequest())
        saved = after.inbox_writes_skipped_inactive - before.inbox_writes_skipped_inactive
        print(f"inactive skip: {d.followers_targeted} followers, {d.inbox_writes} inbox writes "
              f"(incl. own), {saved} skipped = {saved / d.followers_targeted:.0%} of the writes "
              f"a push-to-all would make")

        # 2. Small posts during a big fan-out.
        load_followers(client, "big", [f"bf{i:06d}" for i in range(args.big_followers)], True)
        smalls = [f"small{i:03d}" for i in range(50)]
        for s in smalls:
            load_followers(client, s, [f"{s}-fan{j}" for j in range(20)], active=True)
        big = posts.CreatePost(post_pb2.CreatePostRequest(author_id="big", text="x")).post
        small_posts = []
        interval = 0.01
        for i in range(args.small_posts):
            small_posts.append(posts.CreatePost(post_pb2.CreatePostRequest(
                author_id=smalls[i % len(smalls)], text="small")).post)
            time.sleep(interval)  # a steady trickle of small posts (load shape, not a wait)
        big_d = wait_delivered(fanout, big.post_id)
        lags = [wait_delivered(fanout, p.post_id).lag_ms for p in small_posts]
        big_end = big.create_time.ToMilliseconds() + big_d.lag_ms
        during = [lag for p, lag in zip(small_posts, lags, strict=True)
                  if p.create_time.ToMilliseconds() < big_end]
        print(f"big fan-out: {big_d.inbox_writes} writes in {big_d.lag_ms} ms "
              f"({big_d.inbox_writes / max(big_d.lag_ms, 1) * 1000:,.0f} writes/s)")
        print(f"small posts created during it: {len(during)}; lag p50 "
              f"{statistics.median(during):.0f} ms, p99 {percentile(during, 99):.0f} ms, "
              f"max {max(during)} ms")

    # 3. Single flight: 200 concurrent readers of a fresh celebrity post.
    with Suite(workers=1, extra_env={"FANLINE_CELEBRITY_THRESHOLD": "150",
                                     "FANLINE_LOG_LEVEL": "WARNING"}) as suite:
        client = StoreOps(suite.env)
        posts = post_pb2_grpc.PostServiceStub(grpc.insecure_channel(suite.post_addr))
        fanout = fanout_pb2_grpc.FanoutServiceStub(grpc.insecure_channel(suite.fanout_addr))
        timeline = timeline_pb2_grpc.TimelineServiceStub(grpc.insecure_channel(suite.timeline_addr))
        readers = [f"reader{i:03d}" for i in range(200)]
        load_followers(client, "star", readers, active=True)
        first = posts.CreatePost(post_pb2.CreatePostRequest(author_id="star", text="x")).post
        wait_delivered(fanout, first.post_id)  # the star is PULL from here on
        timeline.GetTimeline(timeline_pb2.GetTimelineRequest(user_id=readers[0]))  # warm caches
        star_list = client.layout.author_posts("star")
        monitor = CommandMonitor(client.node_url(star_list))
        post = posts.CreatePost(post_pb2.CreatePostRequest(author_id="star", text="fresh")).post
        wait_delivered(fanout, post.post_id)
        body = client.layout.post(int(post.post_id))
        lists, bodies = monitor.count(star_list), monitor.count(body)
        gate = threading.Barrier(100)

        def read(reader: str) -> bool:
            gate.wait(timeout=10)
            page = timeline.GetTimeline(timeline_pb2.GetTimelineRequest(user_id=reader))
            return page.entries[0].post.post_id == post.post_id

        with ThreadPoolExecutor(100) as pool:
            saw = sum(pool.map(read, readers))
        list_reads = monitor.count(star_list) - lists
        body_reads = monitor.count(body) - bodies
        monitor.close()
        print(f"200 concurrent readers ({saw} saw the new post first): {list_reads} store read(s) "
              f"of the star's list, {body_reads} of the post body")

if __name__ == "__main__":
    main()
