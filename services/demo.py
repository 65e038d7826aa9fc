"""`fanline demo`: a small story played over the real gRPC API.

Two ordinary authors (push) and one celebrity (pull), a reader following all three, a crowd
of fans. Prints the reader's timeline with each entry's source, and what each post cost in
inbox writes. With FANLINE_AUTH=jwt every call carries a token minted for the user making it
(an operator's for the statistics), and the demo shows a call the rules refuse.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time

import grpc

from fanline.common import config
from fanline.common.auth import ADMIN, Keys, keys_for
from fanline.common.tls import TlsFiles
from fanline.gen.feed.v1 import (
    fanout_pb2,
    fanout_pb2_grpc,
    post_pb2,
    post_pb2_grpc,
    timeline_pb2,
    timeline_pb2_grpc,
)
from fanline.launcher import Suite, healthy, open_channel

DEMO_THRESHOLD = 25  # celebrity threshold of a suite the demo starts itself
FANS = 30


Metadata = list[tuple[str, str]] | None


class Credentials:
    """Call metadata for acting as a user: a bearer token with FANLINE_AUTH=jwt, else none."""

    def __init__(self, keys: Keys | None) -> None:
        self._keys = keys
        self._tokens: dict[tuple[str, tuple[str, ...]], str] = {}

    def token(self, user: str, *scopes: str) -> str:
        assert self._keys is not None
        return self._tokens.setdefault((user, scopes), self._keys.mint(user, scopes, 600))

    def of(self, user: str, *scopes: str) -> Metadata:
        if self._keys is None:
            return None
        return [("authorization", f"Bearer {self.token(user, *scopes)}")]


def _wait_delivered(fanout: fanout_pb2_grpc.FanoutServiceStub, post_id: str, who: Metadata,
                    timeout_s: float = 10) -> fanout_pb2.GetDeliveryResponse:
    deadline = time.monotonic() + timeout_s
    while True:
        reply = fanout.GetDelivery(fanout_pb2.GetDeliveryRequest(post_id=post_id), metadata=who)
        if reply.state == fanout_pb2.DELIVERY_STATE_DELIVERED or time.monotonic() > deadline:
            return reply
        time.sleep(0.02)


class LiveWatch:
    """A WatchTimeline stream read in the background; `until` collects its entries."""

    def __init__(self, timeline: timeline_pb2_grpc.TimelineServiceStub, user: str,
                 who: Metadata) -> None:
        self._call = timeline.WatchTimeline(timeline_pb2.WatchTimelineRequest(user_id=user),
                                            metadata=who)
        self._responses = iter(self._call)
        next(self._responses)  # the first, empty response: the watch is live
        self._entries: queue.Queue[tuple[float, timeline_pb2.TimelineEntry]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(grpc.RpcError):  # cancelled by until()
            for response in self._responses:
                if response.WhichOneof("event") == "entry":
                    self._entries.put((time.monotonic(), response.entry))

    def until(self, count: int, timeout_s: float) -> list[tuple[float, timeline_pb2.TimelineEntry]]:
        got: list[tuple[float, timeline_pb2.TimelineEntry]] = []
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(queue.Empty):
            while len(got) < count:
                got.append(self._entries.get(timeout=max(0.01, deadline - time.monotonic())))
        self._call.cancel()
        return got


def play(post_addr: str, fanout_addr: str, timeline_addr: str, keys: Keys | None = None,
         tls: TlsFiles | None = None) -> None:
    as_ = Credentials(keys).of
    posts = post_pb2_grpc.PostServiceStub(open_channel(post_addr, tls))
    fanout = fanout_pb2_grpc.FanoutServiceStub(open_channel(fanout_addr, tls))
    timeline = timeline_pb2_grpc.TimelineServiceStub(open_channel(timeline_addr, tls))
    run = f"{int(time.time()) % 100000}"
    alice, bob, star, reader = (f"{n}-{run}" for n in ("alice", "bob", "stella", "reader"))

    fans = [f"fan{i:03d}-{run}" for i in range(FANS)]
    for fan in fans:
        fanout.Follow(fanout_pb2.FollowRequest(follower_id=fan, followee_id=star),
                      metadata=as_(fan))
    for fan in fans[:10]:  # a third of the fans read their feed; the rest are away
        timeline.GetTimeline(timeline_pb2.GetTimelineRequest(user_id=fan), metadata=as_(fan))
    for fan in fans[:20]:  # alice stays below the threshold: PUSH
        fanout.Follow(fanout_pb2.FollowRequest(follower_id=fan, followee_id=alice),
                      metadata=as_(fan))
    for followee in (alice, bob, star):
        fanout.Follow(fanout_pb2.FollowRequest(follower_id=reader, followee_id=followee),
                      metadata=as_(reader))
    timeline.GetTimeline(timeline_pb2.GetTimelineRequest(user_id=reader), metadata=as_(reader))

    star_info = fanout.GetAuthor(fanout_pb2.GetAuthorRequest(user_id=star), metadata=as_(reader))
    story = [
        (alice, "Morning! Coffee first, then code."),
        (star, "New album out tonight. Thank you all!"),
        (bob, "Anyone up for a run at six?"),
        (alice, "Shipped the fix. Time for lunch."),
        (star, "Tour dates announced."),
    ]
    live = LiveWatch(timeline, reader, as_(reader))  # the reader's app, open meanwhile
    deliveries: list[tuple[str, fanout_pb2.GetDeliveryResponse]] = []
    created_at: dict[str, float] = {}
    for author, text in story:
        post = posts.CreatePost(post_pb2.CreatePostRequest(author_id=author, text=text),
                                metadata=as_(author)).post
        created_at[post.post_id] = time.monotonic()
        deliveries.append((author, _wait_delivered(fanout, post.post_id, as_(author))))
    arrived = live.until(len(story), timeout_s=5)
    print(f"\nLive: {reader}'s WatchTimeline stream, as the posts were made:")
    for at, entry in arrived:
        source = timeline_pb2.EntrySource.Name(entry.source).removeprefix("ENTRY_SOURCE_")
        after_ms = (at - created_at.get(entry.post.post_id, at)) * 1000
        print(f"  +{after_ms:4.0f} ms [{source:5}] {entry.post.author_id:>14}: {entry.post.text}")

    if keys is not None:
        token = Credentials(keys).token(alice)
        print(f"\nauth: jwt. Each call carries its user's token, e.g. {alice}'s:\n"
              f"  authorization: Bearer {token[:24]}...{token[-8:]}")
        try:
            posts.DeletePost(post_pb2.DeletePostRequest(post_id=post.post_id,
                                                        author_id=post.author_id),
                             metadata=as_(bob))
        except grpc.RpcError as refused:
            print(f"  {bob} deleting {post.author_id}'s post: {refused.code().name}: "  # type: ignore[attr-defined]
                  f"{refused.details()}")  # type: ignore[attr-defined]

    print(f"\n{star} has {star_info.follower_count} followers -> "
          f"{fanout_pb2.DeliveryMode.Name(star_info.delivery_mode)}")
    page = timeline.GetTimeline(timeline_pb2.GetTimelineRequest(user_id=reader, page_size=10),
                                metadata=as_(reader))
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
    stats = fanout.GetFanoutStats(fanout_pb2.GetFanoutStatsRequest(),
                                  metadata=as_("demo-operator", ADMIN))
    print(f"  whole suite: {stats.posts_published} posts, {stats.inbox_writes} inbox writes, "
          f"amplification {stats.write_amplification:.2f}, "
          f"{stats.inbox_writes_skipped_inactive} writes skipped for inactive followers\n")


def _auth_summary(settings: config.Settings) -> str:
    if settings.auth == "jwt":
        return "auth: jwt (each call carries a token for the user making it)"
    return "auth: none, every caller is trusted (FANLINE_AUTH=jwt to require tokens)"


def run_demo(extra_env: dict[str, str]) -> int:
    settings = config.load_settings()
    tls = settings.tls()
    if all(healthy(a, tls=tls) for a in (settings.post_addr, settings.fanout_addr,
                                         settings.timeline_addr)):
        print("using the running suite at the configured addresses")
        print(_auth_summary(settings))
        play(settings.post_addr, settings.fanout_addr, settings.timeline_addr, keys_for(settings),
             tls)
        return 0
    env = {"FANLINE_CELEBRITY_THRESHOLD": str(DEMO_THRESHOLD), "FANLINE_LOG_LEVEL": "WARNING",
           **extra_env}
    env.update({k: v for k, v in os.environ.items() if k == "FANLINE_CELEBRITY_THRESHOLD"})
    print(f"starting the suite (embedded store, celebrity threshold {env['FANLINE_CELEBRITY_THRESHOLD']})")
    with Suite(extra_env=env) as suite:
        print(_auth_summary(settings))
        play(suite.post_addr, suite.fanout_addr, suite.timeline_addr,
             keys_for(config.load_settings(suite.env)), suite.tls)
    return 0
