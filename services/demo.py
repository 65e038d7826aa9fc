"""`fanline demo`: a small story played over the real gRPC API.

Two ordinary authors (push) and one celebrity (pull), a reader following all three, a crowd
of fans. Prints the reader's timeline with each entry's source, and what each post cost in
inbox writes.
"""

from __future__ import annotations

import os
import time

import grpc

from services.common import config
from services.gen.feed.v1 import (
    fanout_pb2,
    fanout_pb2_grpc,
    post_pb2,
    post_pb2_grpc,
    timeline_pb2,
    timeline_pb2_grpc,
)
from services.launcher import Suite, healthy

DEMO_THRESHOLD = 25  # celebrity threshold of a suite the demo starts itself
FANS = 30


def _wait_delivered(fanout: fanout_pb2_grpc.FanoutServiceStub, post_id: str,
                    timeout_s: float = 10) -> fanout_pb2.GetDeliveryResponse:
    deadline = time.monotonic() + timeout_s
    while True:
        reply = fanout.GetDelivery(fanout_pb2.GetDeliveryRequest(post_id=post_id))
        if reply.state == fanout_pb2.DELIVERY_STATE_DELIVERED or time.monotonic() > deadline:
            return reply
        time.sleep(0.02)


def play(post_addr: str, fanout_addr: str, timeline_addr: str) -> None:
    posts = post_pb2_grpc.PostServiceStub(grpc.insecure_channel(post_addr))
    fanout = fanout_pb2_grpc.FanoutServiceStub(grpc.insecure_channel(fanout_addr))
    timeline = timeline_pb2_grpc.TimelineServiceStub(grpc.insecure_channel(timeline_addr))
    run = f"{int(time.time()) % 100000}"
    alice, bob, star, reader = (f"{n}-{run}" for n in ("alice", "bob", "stella", "reader"))

    fans = [f"fan{i:03d}-{run}" for i in range(FANS)]
    for fan in fans:
        fanout.Follow(fanout_pb2.FollowRequest(follower_id=fan, followee_id=star))
    for fan in fans[:10]:  # a third of the fans read their feed; the rest are away
        timeline.GetTimeline(timeline_pb2.GetTimelineRequest(user_id=fan))
    for fan in fans[:20]:  # alice stays below the threshold: PUSH
        fanout.Follow(fanout_pb2.FollowRequest(follower_id=fan, followee_id=alice))
    for followee in (alice, bob, star):
        fanout.Follow(fanout_pb2.FollowRequest(follower_id=reader, followee_id=followee))
    timeline.GetTimeline(timeline_pb2.GetTimelineRequest(user_id=reader))

    star_info = fanout.GetAuthor(fanout_pb2.GetAuthorRequest(user_id=star))
    story = [
        (alice, "Morning! Coffee first, then code."),
        (star, "New album out tonight. Thank you all!"),
        (bob, "Anyone up for a run at six?"),
        (alice, "Shipped the fix. Time for lunch."),
        (star, "Tour dates announced."),
    ]
    deliveries: list[tuple[str, fanout_pb2.GetDeliveryResponse]] = []
    for author, text in story:
        post = posts.CreatePost(post_pb2.CreatePostRequest(author_id=author, text=text)).post
        deliveries.append((author, _wait_delivered(fanout, post.post_id)))

    print(f"\n{star} has {star_info.follower_count} followers -> "
          f"{fanout_pb2.DeliveryMode.Name(star_info.delivery_mode)}")
    page = timeline.GetTimeline(timeline_pb2.GetTimelineRequest(user_id=reader, page_size=10))
    print(f"\nTimeline of {reader} (newest first):")
    for entry in page.entries:
        source = timeline_pb2.EntrySource.Name(entry.source).removeprefix("ENTRY_SOURCE_")
        print(f"  [{source:5}] {entry.post.author_id:>14}: {entry.post.text}")
    print(f"  partial={page.partial}")

    print("\nWhat each post cost:")
    for author, d in deliveries:
        mode = fanout_pb2.DeliveryMode.Name(d.delivery_mode).removeprefix("DELIVERY_MODE_")
        print(f"  {author:>14} {mode:4}  followers={d.followers_targeted:3}  "
              f"inbox writes={d.inbox_writes:3}  lag={d.lag_ms} ms")
    push = [d.inbox_writes for _, d in deliveries if d.delivery_mode == fanout_pb2.DELIVERY_MODE_PUSH]
    pull = [d.inbox_writes for _, d in deliveries if d.delivery_mode == fanout_pb2.DELIVERY_MODE_PULL]
    if push:
        print(f"  write amplification, push posts: {sum(push) / len(push):.1f} writes/post")
    if pull:
        print(f"  write amplification, pull posts: {sum(pull) / len(pull):.1f} writes/post")
    stats = fanout.GetFanoutStats(fanout_pb2.GetFanoutStatsRequest())
    print(f"  whole suite: {stats.posts_published} posts, {stats.inbox_writes} inbox writes, "
          f"amplification {stats.write_amplification:.2f}, "
          f"{stats.inbox_writes_skipped_inactive} writes skipped for inactive followers\n")


def run_demo(extra_env: dict[str, str]) -> int:
    settings = config.load_settings()
    if all(healthy(a) for a in (settings.post_addr, settings.fanout_addr, settings.timeline_addr)):
        print("using the running suite at the configured addresses")
        play(settings.post_addr, settings.fanout_addr, settings.timeline_addr)
        return 0
    env = {"FANLINE_CELEBRITY_THRESHOLD": str(DEMO_THRESHOLD), "FANLINE_LOG_LEVEL": "WARNING",
           **extra_env}
    env.update({k: v for k, v in os.environ.items() if k == "FANLINE_CELEBRITY_THRESHOLD"})
    print(f"starting the suite (embedded store, celebrity threshold {env['FANLINE_CELEBRITY_THRESHOLD']})")
    with Suite(extra_env=env) as suite:
        play(suite.post_addr, suite.fanout_addr, suite.timeline_addr)
    return 0
