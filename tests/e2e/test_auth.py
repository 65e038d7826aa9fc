"""FANLINE_AUTH=jwt against the real suite: the attacks that worked without identity are
refused and change nothing, every rule of the access table holds, and tokens made by any
standard JWT library work."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from fanline.common.access import POLICY, Who
from fanline.common.auth import ADMIN, INTERNAL, Keys
from fanline.gen.feed.v1 import fanout_pb2, post_pb2, timeline_pb2
from fanline.launcher import Suite
from tests.conftest import wait_for
from tests.e2e.helpers import Clients

pytestmark = pytest.mark.e2e

SECRET = "e2e-jwt-secret-0123456789abcdef0123"
PAGE_SECRET = "e2e-page-secret-0123456789abcdef012"
KEYS = Keys([SECRET])
AUTH_ENV = {"FANLINE_AUTH": "jwt", "FANLINE_JWT_SECRETS": SECRET,
            "FANLINE_PAGE_TOKEN_SECRETS": PAGE_SECRET}


def bearer(user: str, *scopes: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {KEYS.mint(user, scopes, 300)}")]


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as err:
        return err.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    logs = tmp_path_factory.mktemp("auth-logs")
    with Suite(workers=1, extra_env=AUTH_ENV, log_dir=str(logs)) as running:
        yield running


@pytest.fixture(scope="module")
def api(suite: Suite) -> Clients:
    return Clients.of(suite, default_token=False)  # each call here says who it is, or no one


@pytest.fixture(scope="module")
def story(api: Clients) -> dict[str, str]:
    """alice posts to her followers bob and carol; returns the post's id."""
    for follower in ("bob", "carol"):
        api.fanout.Follow(fanout_pb2.FollowRequest(follower_id=follower, followee_id="alice"),
                          metadata=bearer(follower))
        api.timeline.GetTimeline(timeline_pb2.GetTimelineRequest(user_id=follower),
                                 metadata=bearer(follower))
    post = api.posts.CreatePost(post_pb2.CreatePostRequest(author_id="alice", text="mine"),
                                metadata=bearer("alice")).post
    # Delivered through the suite's own internal calls (post -> fan-out, timeline -> post).
    wait_for(lambda: api.fanout.GetDelivery(
        fanout_pb2.GetDeliveryRequest(post_id=post.post_id), metadata=bearer("alice")).state
        == fanout_pb2.DELIVERY_STATE_DELIVERED, 15, message="delivery")
    return {"post_id": post.post_id}


def timeline_of(api: Clients, user: str) -> list[str]:
    reply = api.timeline.GetTimeline(timeline_pb2.GetTimelineRequest(user_id=user),
                                     metadata=bearer(user))
    return [e.post.post_id for e in reply.entries]


def test_the_suite_works_with_tokens_and_refuses_calls_without(api: Clients,
                                                               story: dict[str, str]) -> None:
    assert timeline_of(api, "bob") == [story["post_id"]]
    assert code_of(lambda: api.timeline.GetTimeline(
        timeline_pb2.GetTimelineRequest(user_id="bob"))) is grpc.StatusCode.UNAUTHENTICATED


def test_the_attacks_are_refused_and_change_nothing(api: Clients, story: dict[str, str]) -> None:
    post_id = story["post_id"]
    mallory = bearer("mallory")
    attacks = {
        # RetractPost removes any author's post from every inbox.
        "retract": (lambda: api.fanout.RetractPost(fanout_pb2.RetractPostRequest(
            post_id=post_id, author_id="alice"), metadata=mallory)),
        # PublishPost pushes mallory's post into alice's followers' inboxes ...
        "publish": (lambda: api.fanout.PublishPost(fanout_pb2.PublishPostRequest(
            post=post_pb2.Post(post_id=post_id, author_id="alice")), metadata=mallory)),
        # ... or pre-publishes a predictable future id.
        "pre-publish": (lambda: api.fanout.PublishPost(fanout_pb2.PublishPostRequest(
            post=post_pb2.Post(post_id=str(int(post_id) + 4096 * 60_000), author_id="alice")),
            metadata=mallory)),
        "delete": (lambda: api.posts.DeletePost(post_pb2.DeletePostRequest(
            post_id=post_id, author_id="alice"), metadata=mallory)),
        "create as alice": (lambda: api.posts.CreatePost(post_pb2.CreatePostRequest(
            author_id="alice", text="not alice"), metadata=mallory)),
        "read bob's timeline": (lambda: api.timeline.GetTimeline(
            timeline_pb2.GetTimelineRequest(user_id="bob"), metadata=mallory)),
        "follow as bob": (lambda: api.fanout.Follow(fanout_pb2.FollowRequest(
            follower_id="bob", followee_id="mallory"), metadata=mallory)),
        "alice's delivery": (lambda: api.fanout.GetDelivery(fanout_pb2.GetDeliveryRequest(
            post_id=post_id), metadata=mallory)),
        "stats": (lambda: api.fanout.GetFanoutStats(fanout_pb2.GetFanoutStatsRequest(),
                                                   metadata=mallory)),
    }
    before = api.fanout.GetFanoutStats(fanout_pb2.GetFanoutStatsRequest(),
                                       metadata=bearer("ops", ADMIN))
    for name, attack in attacks.items():
        assert code_of(attack) is grpc.StatusCode.PERMISSION_DENIED, name
    # A user's token does not make mallory the suite: the same with scopes she invented.
    assert code_of(lambda: api.fanout.RetractPost(fanout_pb2.RetractPostRequest(
        post_id=post_id, author_id="alice"), metadata=[("authorization", "Bearer " + jwt.encode(
            {"sub": "mallory", "scope": INTERNAL, "exp": int(time.time()) + 3600},
            "mallory-guessed-the-secret-0123456789"))])) is grpc.StatusCode.UNAUTHENTICATED
    after = api.fanout.GetFanoutStats(fanout_pb2.GetFanoutStatsRequest(),
                                      metadata=bearer("ops", ADMIN))
    assert (after.posts_published, after.inbox_writes, after.queue_depth) == \
        (before.posts_published, before.inbox_writes, before.queue_depth)
    assert timeline_of(api, "bob") == [post_id] and timeline_of(api, "carol") == [post_id]
    assert api.posts.GetPost(post_pb2.GetPostRequest(post_id=post_id),
                             metadata=bearer("mallory")).post.author_id == "alice"
    ids = api.fanout.ListFollowing(fanout_pb2.ListFollowingRequest(user_id="bob"),
                                   metadata=mallory).user_ids
    assert list(ids) == ["alice"]
    future = str(int(post_id) + 4096 * 60_000)
    assert code_of(lambda: api.fanout.GetDelivery(fanout_pb2.GetDeliveryRequest(
        post_id=future), metadata=bearer("ops", ADMIN))) is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("token", [
    "", "garbage", "a.b.c",
    jwt.encode({"sub": "alice", "exp": int(time.time()) - 3600}, SECRET),  # expired
    jwt.encode({"sub": "alice"}, SECRET),  # no exp
    jwt.encode({"exp": int(time.time()) + 3600}, SECRET),  # no sub
    jwt.encode({"sub": "alice", "exp": int(time.time()) + 3600}, None, algorithm="none"),  # type: ignore[arg-type]
    jwt.encode({"sub": "alice", "exp": int(time.time()) + 3600}, "w" * 40),  # wrong secret
])
def test_bad_tokens_are_unauthenticated(api: Clients, token: str) -> None:
    assert code_of(lambda: api.timeline.GetTimeline(
        timeline_pb2.GetTimelineRequest(user_id="alice"),
        metadata=[("authorization", f"Bearer {token}")])) is grpc.StatusCode.UNAUTHENTICATED


def test_tokens_from_a_standard_library_work(api: Clients, story: dict[str, str]) -> None:
    token = jwt.encode({"sub": "carol", "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")
    reply = api.timeline.GetTimeline(timeline_pb2.GetTimelineRequest(user_id="carol"),
                                     metadata=[("authorization", f"Bearer {token}")])
    assert [e.post.post_id for e in reply.entries] == [story["post_id"]]


def test_fanline_token_prints_a_token_the_suite_accepts(api: Clients, tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "fanline.cli", "token", "carol", "--ttl", "60"],
                         env={"FANLINE_JWT_SECRETS": SECRET, "PATH": ""}, capture_output=True,
                         text=True, timeout=30, check=True).stdout.strip()
    api.timeline.GetTimeline(timeline_pb2.GetTimelineRequest(user_id="carol"),
                             metadata=[("authorization", f"Bearer {out}")])


def test_page_tokens_are_bound_to_their_viewer(api: Clients) -> None:
    for i in range(3):
        api.fanout.Follow(fanout_pb2.FollowRequest(follower_id=f"pager{i}", followee_id="paged"),
                          metadata=bearer(f"pager{i}"))
    first = api.fanout.ListFollowers(fanout_pb2.ListFollowersRequest(user_id="paged", page_size=1),
                                     metadata=bearer("alice"))
    assert first.next_page_token
    api.fanout.ListFollowers(fanout_pb2.ListFollowersRequest(
        user_id="paged", page_size=1, page_token=first.next_page_token), metadata=bearer("alice"))
    for token in (first.next_page_token, first.next_page_token[:-3] + "AAA", "x" * 300):
        with pytest.raises(grpc.RpcError) as err:
            api.fanout.ListFollowers(fanout_pb2.ListFollowersRequest(
                user_id="paged", page_size=1, page_token=token), metadata=bearer("bob"))
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert bad_fields(err.value) == ["page_token"]


def bad_fields(err: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    (detail,) = status.details
    bad = error_details_pb2.BadRequest()
    detail.Unpack(bad)
    return [v.field for v in bad.field_violations]


def test_every_bad_field_is_named_and_unicode_digits_are_not_post_ids(api: Clients) -> None:
    with pytest.raises(grpc.RpcError) as err:
        api.posts.CreatePost(post_pb2.CreatePostRequest(author_id="alice", text=" ",
                                                        request_id="a b"), metadata=bearer("alice"))
    assert bad_fields(err.value) == ["text", "request_id"]
    for post_id in ("²", "٣", "-1", "0", "1e3", "9" * 80):
        calls = [  # called at once, in this iteration
            lambda p=post_id: api.posts.GetPost(post_pb2.GetPostRequest(post_id=p),
                                                metadata=bearer("alice")),
            lambda p=post_id: api.posts.DeletePost(post_pb2.DeletePostRequest(
                post_id=p, author_id="alice"), metadata=bearer("alice")),
            lambda p=post_id: api.fanout.GetDelivery(fanout_pb2.GetDeliveryRequest(post_id=p),
                                                     metadata=bearer("ops", ADMIN)),
            lambda p=post_id: api.fanout.RetractPost(fanout_pb2.RetractPostRequest(
                post_id=p, author_id="alice"), metadata=bearer("fanline:t", INTERNAL)),
            lambda p=post_id: api.fanout.PublishPost(fanout_pb2.PublishPostRequest(
                post=post_pb2.Post(post_id=p, author_id="alice")),
                metadata=bearer("fanline:t", INTERNAL)),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, post_id  # type: ignore[attr-defined]
            assert "Traceback" not in err.value.details() and "Error" not in err.value.details()  # type: ignore[attr-defined]
    far = Timestamp(seconds=10**12)
    with pytest.raises(grpc.RpcError) as err:
        api.fanout.PublishPost(fanout_pb2.PublishPostRequest(post=post_pb2.Post(
            post_id="x", author_id="", create_time=far)), metadata=bearer("fanline:t", INTERNAL))
    assert bad_fields(err.value) == ["post.post_id", "post.author_id", "post.create_time"]


def request_for(method: str, user: str, post_id: str) -> Any:
    """A valid request of `method` naming `user` (in every field that names one)."""
    name = method.rsplit("/", 1)[1]
    return {
        "CreatePost": post_pb2.CreatePostRequest(author_id=user, text="walk"),
        "GetPost": post_pb2.GetPostRequest(post_id=post_id),
        "BatchGetPosts": post_pb2.BatchGetPostsRequest(post_ids=[post_id]),
        "DeletePost": post_pb2.DeletePostRequest(post_id="1", author_id=user),
        "ListAuthorPosts": post_pb2.ListAuthorPostsRequest(author_id=user),
        "Follow": fanout_pb2.FollowRequest(follower_id=user, followee_id="walk-target"),
        "Unfollow": fanout_pb2.UnfollowRequest(follower_id=user, followee_id="walk-target"),
        "ListFollowers": fanout_pb2.ListFollowersRequest(user_id=user),
        "ListFollowing": fanout_pb2.ListFollowingRequest(user_id=user),
        "GetAuthor": fanout_pb2.GetAuthorRequest(user_id=user),
        "PublishPost": fanout_pb2.PublishPostRequest(post=post_pb2.Post(post_id=post_id,
                                                                        author_id="alice")),
        "RetractPost": fanout_pb2.RetractPostRequest(post_id="1", author_id=user),
        "GetFanoutStats": fanout_pb2.GetFanoutStatsRequest(),
        "GetDelivery": fanout_pb2.GetDeliveryRequest(post_id=post_id),
        "GetTimeline": timeline_pb2.GetTimelineRequest(user_id=user),
        "WatchTimeline": timeline_pb2.WatchTimelineRequest(user_id=user),
    }[name]


def first_response(responses: Any) -> None:
    """A server-streaming call is answered once its first response arrives (or it fails)."""
    try:
        next(responses)
    finally:
        responses.cancel()


def call(api: Clients, method: str, request: Any, metadata: list[tuple[str, str]]) -> grpc.StatusCode:
    service, name = method.strip("/").split("/")
    stub = {"feed.v1.PostService": api.posts, "feed.v1.FanoutService": api.fanout,
            "feed.v1.TimelineService": api.timeline}[service]
    if name in STREAMING:
        return code_of(lambda: first_response(getattr(stub, name)(request, metadata=metadata,
                                                                  timeout=10)))
    return code_of(lambda: getattr(stub, name)(request, metadata=metadata))


STREAMING = {m.name for module in (post_pb2, fanout_pb2, timeline_pb2)
             for service in module.DESCRIPTOR.services_by_name.values()
             for m in service.methods if m.server_streaming}


def test_every_rule_of_the_access_table(api: Clients, story: dict[str, str]) -> None:
    """Each row: no token, a stranger acting for someone else, and the allowed caller."""
    post_id = story["post_id"]  # alice's
    allowed = {Who.ANYONE: bearer("walker"), Who.SELF: bearer("alice"),
               Who.OWNER: bearer("alice"), Who.INTERNAL: bearer("fanline:walk", INTERNAL),
               Who.ADMIN: bearer("ops", ADMIN)}
    refused = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
    for method, rule in POLICY.items():
        request = request_for(method, "alice", post_id)
        assert call(api, method, request, []) is grpc.StatusCode.UNAUTHENTICATED, method
        stranger = call(api, method, request, bearer("stranger"))
        if rule.who is Who.ANYONE:
            assert stranger not in refused, (method, stranger)
        else:
            assert stranger is grpc.StatusCode.PERMISSION_DENIED, (method, stranger)
        assert call(api, method, request, allowed[rule.who]) not in refused, method
    # Operators may read any delivery; nobody may read a missing one's existence for free.
    assert call(api, "/feed.v1.FanoutService/GetDelivery",
                fanout_pb2.GetDeliveryRequest(post_id=post_id), bearer("ops", ADMIN)) \
        is grpc.StatusCode.OK
