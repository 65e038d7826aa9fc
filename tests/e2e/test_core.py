"""The suite as real processes over real gRPC: the core behaviours end to end."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from fanline.gen.feed.v1 import fanout_pb2, post_pb2, timeline_pb2
from tests.conftest import wait_for
from tests.e2e.conftest import THRESHOLD
from tests.e2e.helpers import Clients


def make_celebrity(api: Clients, star: str, uid: str) -> None:
    for i in range(THRESHOLD):
        api.follow(f"{uid}-fan{i}", star)
    reply = api.fanout.GetAuthor(fanout_pb2.GetAuthorRequest(user_id=star))
    assert reply.delivery_mode == fanout_pb2.DELIVERY_MODE_PULL
    assert reply.follower_count >= THRESHOLD


def test_push_pull_own_posts_merge_and_paging(api: Clients, uid: str) -> None:
    reader, bob, star = f"{uid}-reader", f"{uid}-bob", f"{uid}-star"
    make_celebrity(api, star, uid)
    api.follow(reader, bob)
    api.follow(reader, star)
    api.page(reader)  # the reader is active from now on
    created = []
    for i in range(8):
        for author in (bob, star, reader):
            created.append(api.post(author, f"{author} #{i}"))
    for post in created:
        delivery = api.wait_delivered(post.post_id)
        expected = fanout_pb2.DELIVERY_MODE_PULL if post.author_id == star else \
            fanout_pb2.DELIVERY_MODE_PUSH
        assert delivery.delivery_mode == expected
    first = api.page(reader, 5)
    sources = {e.post.author_id: e.source for e in first.entries}
    assert sources[star] == timeline_pb2.ENTRY_SOURCE_PULL
    assert sources[bob] == timeline_pb2.ENTRY_SOURCE_INBOX
    assert sources[reader] == timeline_pb2.ENTRY_SOURCE_INBOX  # own posts
    assert all(e.post.text for e in first.entries)  # hydrated bodies
    ids = api.timeline_ids(reader, 5)
    assert ids == [p.post_id for p in sorted(created, key=lambda p: -int(p.post_id))]
    stats = api.stats()
    assert stats.posts_pull >= 8 and stats.posts_push >= 16


def test_follow_backfills_and_unfollow_purges(api: Clients, uid: str) -> None:
    reader, bob = f"{uid}-reader", f"{uid}-bob"
    api.page(reader)
    old = [api.post(bob, f"old {i}") for i in range(3)]
    for post in old:
        api.wait_delivered(post.post_id)
    assert api.timeline_ids(reader) == []
    api.follow(reader, bob)
    api.follow(reader, bob)  # idempotent
    assert api.timeline_ids(reader) == [p.post_id for p in reversed(old)]
    api.unfollow(reader, bob)
    api.unfollow(reader, bob)
    assert api.timeline_ids(reader) == []
    listing = api.fanout.ListFollowing(fanout_pb2.ListFollowingRequest(user_id=reader))
    assert list(listing.user_ids) == []


def test_delete_removes_the_post_everywhere(api: Clients, uid: str) -> None:
    reader, bob, star = f"{uid}-reader", f"{uid}-bob", f"{uid}-star"
    make_celebrity(api, star, uid)
    api.follow(reader, bob)
    api.follow(reader, star)
    api.page(reader)
    pushed, pulled = api.post(bob, "to delete"), api.post(star, "to delete too")
    api.wait_delivered(pushed.post_id)
    api.wait_delivered(pulled.post_id)
    assert set(api.timeline_ids(reader)) == {pushed.post_id, pulled.post_id}
    with pytest.raises(grpc.RpcError) as err:
        api.posts.DeletePost(post_pb2.DeletePostRequest(post_id=pushed.post_id, author_id=star),
                             metadata=api.as_(star))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    for post in (pushed, pulled):
        api.delete(post)  # with its author's token
    wait_for(lambda: api.timeline_ids(reader) == [], 5, message="deleted posts to vanish")
    for post in (pushed, pulled):
        with pytest.raises(grpc.RpcError) as err:
            api.posts.GetPost(post_pb2.GetPostRequest(post_id=post.post_id))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    listing = api.posts.ListAuthorPosts(post_pb2.ListAuthorPostsRequest(author_id=bob))
    assert list(listing.posts) == []


def test_create_post_is_idempotent_per_request_id(api: Clients, uid: str) -> None:
    reader, bob = f"{uid}-reader", f"{uid}-bob"
    api.follow(reader, bob)
    api.page(reader)
    first = api.post(bob, "once", request_id="req-1")
    again = api.post(bob, "once", request_id="req-1")
    other_author = api.post(f"{uid}-carol", "once", request_id="req-1")
    assert again == first
    assert other_author.post_id != first.post_id
    api.wait_delivered(first.post_id)
    assert api.timeline_ids(reader) == [first.post_id]
    assert api.delivery(first.post_id).inbox_writes == 2  # reader + bob: delivered once
    listing = api.posts.ListAuthorPosts(post_pb2.ListAuthorPostsRequest(author_id=bob))
    assert [p.post_id for p in listing.posts] == [first.post_id]


def test_author_posts_and_followers_page_with_tokens(api: Clients, uid: str) -> None:
    bob = f"{uid}-bob"
    posts = [api.post(bob, f"p{i}") for i in range(5)]
    seen, token = [], ""
    while True:
        reply = api.posts.ListAuthorPosts(
            post_pb2.ListAuthorPostsRequest(author_id=bob, page_size=2, page_token=token))
        seen += [p.post_id for p in reply.posts]
        token = reply.next_page_token
        if not token:
            break
    assert seen == [p.post_id for p in reversed(posts)]
    fans = sorted(f"{uid}-f{i}" for i in range(THRESHOLD - 1))
    for fan in fans:
        api.follow(fan, bob)
    got, token = [], ""
    while True:
        reply = api.fanout.ListFollowers(
            fanout_pb2.ListFollowersRequest(user_id=bob, page_size=2, page_token=token))
        got += list(reply.user_ids)
        token = reply.next_page_token
        if not token:
            break
    assert got == fans
    author = api.fanout.GetAuthor(fanout_pb2.GetAuthorRequest(user_id=bob))
    assert (author.follower_count, author.delivery_mode) == (len(fans), fanout_pb2.DELIVERY_MODE_PUSH)
    batch = api.posts.BatchGetPosts(post_pb2.BatchGetPostsRequest(
        post_ids=[posts[3].post_id, "999999", posts[1].post_id]))
    assert [p.post_id for p in batch.posts] == [posts[3].post_id, posts[1].post_id]


def field_of(err: grpc.RpcError) -> str:
    """The field named by the rich error details (google.rpc.BadRequest)."""
    for key, value in err.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                bad = error_details_pb2.BadRequest()
                if detail.Unpack(bad):
                    return bad.field_violations[0].field
    return ""


BAD_CALLS = [
    ("empty text", lambda a, u: a.posts.CreatePost(post_pb2.CreatePostRequest(author_id=u, text="")),
     grpc.StatusCode.INVALID_ARGUMENT, "text"),
    ("long text", lambda a, u: a.posts.CreatePost(
        post_pb2.CreatePostRequest(author_id=u, text="x" * 1001)),
     grpc.StatusCode.INVALID_ARGUMENT, "text"),
    ("empty author", lambda a, u: a.posts.CreatePost(post_pb2.CreatePostRequest(text="hi")),
     grpc.StatusCode.INVALID_ARGUMENT, "author_id"),
    ("long author", lambda a, u: a.posts.CreatePost(
        post_pb2.CreatePostRequest(author_id="a" * 65, text="hi")),
     grpc.StatusCode.INVALID_ARGUMENT, "author_id"),
    ("bad post id", lambda a, u: a.posts.GetPost(post_pb2.GetPostRequest(post_id="abc")),
     grpc.StatusCode.INVALID_ARGUMENT, "post_id"),
    ("unknown post", lambda a, u: a.posts.GetPost(post_pb2.GetPostRequest(post_id="12345")),
     grpc.StatusCode.NOT_FOUND, ""),
    ("delete unknown", lambda a, u: a.posts.DeletePost(
        post_pb2.DeletePostRequest(post_id="12345", author_id=u)), grpc.StatusCode.NOT_FOUND, ""),
    ("follow self", lambda a, u: a.fanout.Follow(
        fanout_pb2.FollowRequest(follower_id=u, followee_id=u)),
     grpc.StatusCode.INVALID_ARGUMENT, "followee_id"),
    ("empty follower", lambda a, u: a.fanout.Follow(fanout_pb2.FollowRequest(followee_id=u)),
     grpc.StatusCode.INVALID_ARGUMENT, "follower_id"),
    ("negative page size", lambda a, u: a.timeline.GetTimeline(
        timeline_pb2.GetTimelineRequest(user_id=u, page_size=-1)),
     grpc.StatusCode.INVALID_ARGUMENT, "page_size"),
    ("forged timeline token", lambda a, u: a.timeline.GetTimeline(
        timeline_pb2.GetTimelineRequest(user_id=u, page_token="bm90LW91cnM")),
     grpc.StatusCode.INVALID_ARGUMENT, "page_token"),
    ("forged followers token", lambda a, u: a.fanout.ListFollowers(
        fanout_pb2.ListFollowersRequest(user_id=u, page_token="zzz")),
     grpc.StatusCode.INVALID_ARGUMENT, "page_token"),
    ("forged author posts token", lambda a, u: a.posts.ListAuthorPosts(
        post_pb2.ListAuthorPostsRequest(author_id=u, page_token="zzz")),
     grpc.StatusCode.INVALID_ARGUMENT, "page_token"),
    ("bad id in batch", lambda a, u: a.posts.BatchGetPosts(
        post_pb2.BatchGetPostsRequest(post_ids=["1", "x"])),
     grpc.StatusCode.INVALID_ARGUMENT, "post_ids[1]"),
    ("unknown delivery", lambda a, u: a.fanout.GetDelivery(
        fanout_pb2.GetDeliveryRequest(post_id="12345")), grpc.StatusCode.NOT_FOUND, ""),
    ("publish without post", lambda a, u: a.fanout.PublishPost(fanout_pb2.PublishPostRequest()),
     grpc.StatusCode.INVALID_ARGUMENT, "post"),
]


@pytest.mark.parametrize(("name", "call", "code", "field"), BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
def test_bad_input_gets_a_clear_status_and_touches_nothing(
    api: Clients, uid: str, name: str, call, code: grpc.StatusCode, field: str
) -> None:
    user = f"{uid[-20:]}-u"
    kept = api.post(user, "kept")
    with pytest.raises(grpc.RpcError) as err:
        call(api, user)
    assert err.value.code() == code, err.value.details()
    if field:
        assert field_of(err.value) == field
        assert err.value.details().startswith(field)
    assert api.posts.GetPost(post_pb2.GetPostRequest(post_id=kept.post_id)).post == kept
    listing = api.posts.ListAuthorPosts(post_pb2.ListAuthorPostsRequest(author_id=user))
    assert [p.post_id for p in listing.posts] == [kept.post_id]


def test_page_size_is_defaulted_and_clamped(api: Clients, uid: str) -> None:
    reader = f"{uid}-r"
    api.page(reader)
    for i in range(25):
        api.post(reader, f"p{i}")
    wait_for(lambda: len(api.timeline_ids(reader)) == 25, 10, message="own posts")
    assert len(api.page(reader, 0).entries) == 20
    assert len(api.page(reader, 1000).entries) == 25


def test_every_service_serves_health_and_reflection(suite) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    expected = {suite.post_addr: "feed.v1.PostService", suite.fanout_addr: "feed.v1.FanoutService",
                suite.timeline_addr: "feed.v1.TimelineService"}
    for addr, service in expected.items():
        with grpc.insecure_channel(addr) as channel:
            names = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert {service, "grpc.health.v1.Health"} <= names
