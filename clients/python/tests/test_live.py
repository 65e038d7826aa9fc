"""The client against a running suite (see conftest.py for the environment variables)."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from conftest import Live, eventually

from fanline_client import Client, fanout_pb2, timeline_pb2


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4().hex[:12]}"


def timeline_ids(client: Client, user: str) -> list[str]:
    return [e.post.post_id for e in client.get_timeline(user, page_size=100).entries]


def test_create_is_idempotent_and_posts_read_back(live: Live, alice: Client) -> None:
    text = unique("hello")
    request_id = str(uuid.uuid4())
    post = alice.create_post(live.alice, text, request_id=request_id)
    assert post.post_id and post.author_id == live.alice and post.text == text
    assert post.create_time.seconds > 0
    # The same request id again (a client retrying after a lost reply) is the same post.
    assert alice.create_post(live.alice, text, request_id=request_id) == post
    other = alice.create_post(live.alice, unique("another"))
    assert other.post_id != post.post_id

    assert alice.get_post(post.post_id) == post
    assert alice.batch_get_posts([other.post_id, "1", post.post_id]) == [other, post]
    page = alice.list_author_posts(live.alice, page_size=2)
    assert [p.post_id for p in page.posts] == [other.post_id, post.post_id]


def test_a_follower_reads_the_post_then_it_is_deleted(live: Live, alice: Client,
                                                      bob: Client) -> None:
    bob.follow(live.bob, live.alice)
    assert live.alice in bob.list_following(live.bob, page_size=100).user_ids
    assert live.bob in alice.list_followers(live.alice, page_size=100).user_ids
    author = bob.get_author(live.alice)
    assert author.user_id == live.alice and author.follower_count >= 1

    post = alice.create_post(live.alice, unique("for my followers"))
    # Delivery is asynchronous (a fan-out worker pushes it): poll the follower's timeline.
    eventually(lambda: post.post_id in timeline_ids(bob, live.bob), what="the post in bob's timeline")
    entry = next(e for e in bob.get_timeline(live.bob, page_size=100).entries
                 if e.post.post_id == post.post_id)
    assert entry.post == post and entry.source != timeline_pb2.ENTRY_SOURCE_UNSPECIFIED

    def delivered() -> fanout_pb2.GetDeliveryResponse | None:
        record = alice.get_delivery(post.post_id)  # the author may read their post's record
        return record if record.state == fanout_pb2.DELIVERY_STATE_DELIVERED else None

    delivery = eventually(delivered, what="the delivery record to say delivered")
    assert delivery.post_id == post.post_id
    assert delivery.delivery_mode != fanout_pb2.DELIVERY_MODE_UNSPECIFIED

    alice.delete_post(post.post_id, live.alice)
    assert code_of(lambda: alice.get_post(post.post_id)) == grpc.StatusCode.NOT_FOUND
    eventually(lambda: post.post_id not in timeline_ids(bob, live.bob),
               what="the deleted post to leave bob's timeline")


def test_bad_calls_raise_invalid_argument(live: Live, alice: Client) -> None:
    assert code_of(lambda: alice.create_post(live.alice, "")) == grpc.StatusCode.INVALID_ARGUMENT
    assert (code_of(lambda: alice.get_timeline(live.alice, page_size=-1))
            == grpc.StatusCode.INVALID_ARGUMENT)
    assert code_of(lambda: alice.get_post("not-a-post-id")) == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as raised:
        alice.create_post(live.alice, "")
    assert "text" in (raised.value.details() or "")


def test_missing_or_wrong_token_is_unauthenticated(live: Live, alice: Client) -> None:
    if not live.auth:
        pytest.skip("the suite runs without authentication (no FANLINE_TEST_TOKEN_*)")
    post = alice.create_post(live.alice, unique("public"))
    for token in (None, "not-a-jwt", live.alice_token[:-4] + "AAAA"):
        with live.client(token) as stranger:
            assert (code_of(functools.partial(stranger.get_post, post.post_id))
                    == grpc.StatusCode.UNAUTHENTICATED), token
    # Authenticated, but acting for someone else.
    assert (code_of(lambda: alice.create_post(live.bob, "as bob"))
            == grpc.StatusCode.PERMISSION_DENIED)
    # The token can come from a callable, asked on every call (a refreshing token source).
    asked: list[int] = []

    def token_source() -> str:
        asked.append(1)
        return live.alice_token

    with live.client(token_source) as refreshing:
        refreshing.get_post(post.post_id)
        refreshing.get_author(live.alice)
    assert len(asked) == 2


def test_async_client_core_flow(live: Live) -> None:
    async def flow() -> None:
        async with live.async_client(live.alice_token or None) as alice, \
                live.async_client(live.bob_token or None) as bob:
            await bob.follow(live.bob, live.alice)
            text = unique("async")
            request_id = str(uuid.uuid4())
            post = await alice.create_post(live.alice, text, request_id=request_id)
            assert post.text == text
            assert await alice.create_post(live.alice, text, request_id=request_id) == post
            assert await alice.get_post(post.post_id) == post
            assert await alice.batch_get_posts([post.post_id]) == [post]

            async def in_timeline() -> bool:
                page = await bob.get_timeline(live.bob, page_size=100)
                return post.post_id in [e.post.post_id for e in page.entries]

            for _ in range(400):  # up to 20 s: delivery is asynchronous
                if await in_timeline():
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the post never reached bob's timeline")

            await alice.delete_post(post.post_id, live.alice)
            with pytest.raises(grpc.RpcError) as raised:
                await alice.get_post(post.post_id)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.RpcError) as raised:
                await alice.create_post(live.alice, "")
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    asyncio.run(flow())

