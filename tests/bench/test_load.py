"""The bulk store loader leaves the state the services' own calls would leave (one node and
cluster alike)."""

from __future__ import annotations

import time

import pytest

from fanline.bench.graph import synthetic
from fanline.bench.load import choose_method, load_store, seed_plan
from fanline.common.config import Settings
from fanline.common.store import Store
from fanline.common.store.bulk import BulkLoad
from fanline.fanout import policy
from fanline.fanout.app import build_fanout

GRAPH = synthetic(users=40, mean_follows=4, celebrities=1, celebrity_followers=30,
                  celebrity_reach=0.5, seed=3)


async def follow_state(store: Store) -> dict[str, set[str]]:
    """Every copy of every follow edge, by key."""
    layout = store.layout
    out: dict[str, set[str]] = {}
    for account in GRAPH.following:
        keys = [layout.followers(account), layout.following(account),
                *(layout.local_followers(b, account) for b in range(layout.buckets))]
        for key in keys:
            members = await store.client.command("ZRANGE", key, 0, -1, "WITHSCORES")
            assert all(score == 0 for _, score in members)
            if members:
                out[key] = {m.decode() for m, _ in members}
    return out


async def test_follow_state_equals_what_follow_calls_make(store: Store, settings: Settings,
                                                          store_server) -> None:
    await load_store(store, GRAPH, threshold=10**12, seed_posts_per_author=0, inbox_max=800)
    loaded = await follow_state(store)
    store_server.server.flushall()
    fanout = build_fanout(store, settings.with_overrides(celebrity_threshold=10**12))
    for follower, followees in GRAPH.following.items():
        for followee in followees:
            await fanout.follow(follower, followee)
    assert await follow_state(store) == loaded
    assert sum(len(v) for k, v in loaded.items() if ":following:" in k) == GRAPH.edges


async def test_seeded_state_matches_push_and_pull_delivery(store: Store) -> None:
    threshold = 20  # the celebrity (30 followers) is PULL, everyone else PUSH
    report = await load_store(store, GRAPH, threshold, seed_posts_per_author=2, inbox_max=800)
    assert report.method == "store" and report.seed_posts == 2 * len(GRAPH.authors())
    counts = GRAPH.follower_counts()
    pulled = {a for a in GRAPH.authors() if counts[a] >= threshold}
    assert pulled == {"c0"}
    assert await store.graph.merged_authors() == pulled
    assert [a for a in GRAPH.authors() if await store.graph.is_pull(a)] == ["c0"]

    posts = {a: set(await store.posts.author_ids(a, None, 100)) for a in GRAPH.authors()}
    assert all(len(ids) == 2 for ids in posts.values())
    for account, followees in GRAPH.following.items():
        want = set() if account in pulled else set(posts.get(account, ()))
        for followee in followees:
            if followee not in pulled:
                want |= posts[followee]
        assert set(await store.inboxes.all_ids(account)) == want, account
    # Every seed post has a body in its author's bucket; the bucket's id script continues above
    # the seeds.
    for author, ids in posts.items():
        for post_id in ids:
            body = await store.posts.get(post_id)
            assert body is not None and body.author_id == author
            assert store.layout.bucket_of_post(post_id) == store.layout.bucket_of_user(author)
    created = await store.posts.create("c0", "later", "", 0)
    assert created.post is not None and int(created.post.post_id) > max(posts["c0"])


async def test_loaded_accounts_count_as_active_for_the_push_script(store: Store) -> None:
    await load_store(store, GRAPH, threshold=10**12, seed_posts_per_author=0, inbox_max=800)
    followers, _ = await store.graph.page("c0", "followers", None, 1000)
    since = policy.active_since(time.time(), active_days=7)
    written, skipped = await store.inboxes.push(
        store.layout.compose_post_id(2**40, 0, 0), "c0", store.inboxes.group(followers), 800, since)
    assert (written, skipped) == (30, 0)


def test_auto_load_method_and_seed_plan() -> None:
    assert choose_method("auto", GRAPH) == "grpc"
    assert choose_method("store", GRAPH) == "store"
    big = synthetic(users=2000, mean_follows=20, celebrities=0, seed=1)
    assert choose_method("auto", big) == "store"
    plan = seed_plan(GRAPH, 3, seed=5)
    assert plan == seed_plan(GRAPH, 3, seed=5)
    assert sorted(plan) == sorted(a for a in GRAPH.authors() for _ in range(3))


async def test_bulk_load_raises_on_an_error_reply(store: Store) -> None:
    await store.client.command("SET", store.layout.inbox("plain"), "1")
    bulk = await BulkLoad.open(store.client, store.layout)
    await bulk.inbox("plain", [1])  # WRONGTYPE: the key holds a string
    with pytest.raises(RuntimeError, match="WRONGTYPE"):
        await bulk.close()
