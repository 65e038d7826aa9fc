"""The bulk store loader leaves the state the services' own calls would leave."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from bench.graph import synthetic
from bench.load import choose_method, load_store, seed_plan
from services.common import keys
from services.common.config import Settings
from services.common.ids import PostIdGenerator
from services.fanout import policy
from services.fanout.inbox import InboxWriter
from services.fanout.service import Fanout

GRAPH = synthetic(users=40, mean_follows=4, celebrities=1, celebrity_followers=30,
                  celebrity_reach=0.5, seed=3)


async def follow_sets(redis: Redis) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for account in GRAPH.following:
        for key in (keys.followers(account), keys.following(account)):
            members = await redis.zrange(key, 0, -1, withscores=True)
            assert all(score == 0 for _, score in members)
            out[key] = {m.decode() for m, _ in members}
    return out


async def test_follow_sets_equal_those_follow_calls_make(redis: Redis,
                                                         settings: Settings) -> None:
    await load_store(redis, GRAPH, threshold=10**12, seed_posts_per_author=0, inbox_max=800)
    loaded = await follow_sets(redis)
    await redis.flushall()
    fanout = Fanout(redis, settings)
    for follower, followees in GRAPH.following.items():
        for followee in followees:
            await fanout.follow(follower, followee)
    assert await follow_sets(redis) == loaded
    assert sum(len(v) for k, v in loaded.items() if k.endswith(":following")) == GRAPH.edges


async def test_seeded_state_matches_push_and_pull_delivery(redis: Redis) -> None:
    threshold = 20  # the celebrity (30 followers) is PULL, everyone else PUSH
    report = await load_store(redis, GRAPH, threshold, seed_posts_per_author=2, inbox_max=800)
    assert report.method == "store" and report.seed_posts == 2 * len(GRAPH.authors())
    counts = GRAPH.follower_counts()
    pulled = {a for a in GRAPH.authors() if counts[a] >= threshold}
    assert pulled == {"c0"}
    for key in (keys.pull_authors(), keys.merged_authors()):
        assert {m.decode() for m in await redis.smembers(key)} == pulled

    posts = {a: {int(x) for x in await redis.zrange(keys.author_posts(a), 0, -1)}
             for a in GRAPH.authors()}
    assert all(len(ids) == 2 for ids in posts.values())
    for account, followees in GRAPH.following.items():
        want = set() if account in pulled else set(posts.get(account, ()))
        for followee in followees:
            if followee not in pulled:
                want |= posts[followee]
        got = {int(x) for x in await redis.zrange(keys.inbox(account), 0, -1)}
        assert got == want, account
    # Every seed post has a body; the services' id generator continues above the seeds.
    some = next(iter(posts["c0"]))
    assert await redis.exists(keys.post(str(some)))
    assert await PostIdGenerator(redis).next_id() > max(max(ids) for ids in posts.values())


async def test_loaded_accounts_count_as_active_for_the_push_script(redis: Redis) -> None:
    await load_store(redis, GRAPH, threshold=10**12, seed_posts_per_author=0, inbox_max=800)
    followers = [f.decode() for f in await redis.zrange(keys.followers("c0"), 0, -1)]
    since = policy.active_since(time.time(), active_days=7)
    written, skipped = await InboxWriter(redis, 800).push(10**12, "c0", followers, since)
    assert (written, skipped) == (30, 0)


def test_auto_load_method_and_seed_plan() -> None:
    assert choose_method("auto", GRAPH) == "grpc"
    assert choose_method("store", GRAPH) == "store"
    big = synthetic(users=2000, mean_follows=20, celebrities=0, seed=1)
    assert choose_method("auto", big) == "store"
    plan = seed_plan(GRAPH, 3, seed=5)
    assert plan == seed_plan(GRAPH, 3, seed=5)
    assert sorted(plan) == sorted(a for a in GRAPH.authors() for _ in range(3))


async def test_bulk_writer_raises_on_an_error_reply(redis: Redis) -> None:
    import pytest

    from bench.load import BulkWriter

    bulk = await BulkWriter.open(redis)
    bulk.send("SET", "plain", "1")
    bulk.send("ZADD", "plain", "1", "m")  # WRONGTYPE: the key holds a string
    with pytest.raises(RuntimeError, match="WRONGTYPE"):
        await bulk.flush()
    await bulk.close()
