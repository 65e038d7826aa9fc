"""The timeline read on a real store: merge, paging, deep pages, rebuild, budget, deletes."""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from fanline.gen.feed.v1 import post_pb2
from fanline.timeline.cursor import FIRST_PAGE, Cursor, Regime
from fanline.timeline.merge import Source
from tests.conftest import async_wait_for, points
from tests.integration.conftest import Stack


async def test_merges_inbox_and_pulled_newest_first_with_sources(make_stack) -> None:
    stack: Stack = await make_stack(celebrity_threshold=3)
    for fan in ("f1", "f2", "reader"):
        await stack.fanout.follow(fan, "star")
    await stack.fanout.follow("reader", "bob")
    await stack.activate("reader")
    posts = [await stack.post(a, f"{a}{i}") for i in range(3) for a in ("bob", "star")]
    mine = await stack.post("reader", "my own")
    await stack.drain()
    page = await stack.page("reader", 20)
    assert [p.post_id for p, _ in page.entries] == [
        p.post_id for p in sorted([*posts, mine], key=lambda p: -int(p.post_id))
    ]
    sources = {p.post_id: s for p, s in page.entries}
    assert {sources[p.post_id] for p in posts if p.author_id == "star"} == {Source.PULL}
    assert {sources[p.post_id] for p in posts if p.author_id == "bob"} == {Source.INBOX}
    assert sources[mine.post_id] is Source.INBOX
    assert page.next_cursor is None and not page.partial


async def test_paging_past_the_inbox_cap_reaches_every_post_once(make_stack) -> None:
    stack: Stack = await make_stack(inbox_max=101, celebrity_threshold=2)
    await stack.fanout.follow("reader", "bob")
    await stack.fanout.follow("reader", "star")
    await stack.fanout.follow("other", "star")
    await stack.activate("reader")
    created = []
    for i in range(200):
        created.append(await stack.post("bob" if i % 4 else "star", f"n{i}"))
    await stack.drain()
    assert len(await stack.inbox("reader")) == 101  # trimmed: older bob posts only in his list
    pages = []
    cursor: Cursor | None = FIRST_PAGE
    ids: list[int] = []
    while cursor is not None:
        page = await stack.page("reader", 9, cursor)
        pages.append(page)
        ids += [int(p.post_id) for p, _ in page.entries]
        cursor = page.next_cursor
    assert ids == sorted((int(p.post_id) for p in created), reverse=True)
    assert any(p.next_cursor and p.next_cursor.regime is Regime.ARCHIVE for p in pages)


async def test_returning_reader_gets_a_rebuilt_feed_not_an_empty_one(make_stack) -> None:
    stack: Stack = await make_stack()
    await stack.fanout.follow("away", "bob")
    await stack.fanout.follow("away", "carol")
    posts = [await stack.post(a) for a in ("bob", "carol", "bob")]
    await stack.drain()
    assert await stack.inbox("away") == []  # skipped while inactive
    page = await stack.page("away")
    assert [p.post_id for p, _ in page.entries] == [p.post_id for p in reversed(posts)]
    assert await stack.inbox("away") == [int(p.post_id) for p in reversed(posts)]
    stats = await stack.fanout.stats()
    assert stats.inbox_rebuilds == 1 and stats.skipped_inactive == 3
    later = await stack.post("carol")  # now active: pushed like anyone else
    await stack.drain()
    assert (await stack.inbox("away"))[0] == int(later.post_id)


async def test_rebuild_is_bounded_and_the_rest_comes_from_author_lists(make_stack) -> None:
    stack: Stack = await make_stack(rebuild_posts_per_author=3)
    await stack.fanout.follow("away", "bob")
    await stack.fanout.follow("away", "carol")
    created = [await stack.post("bob" if i % 3 else "carol") for i in range(12)]
    await stack.drain()
    await stack.page("away")
    assert len(await stack.inbox("away")) <= 6
    assert await stack.all_ids("away", 4) == sorted((int(p.post_id) for p in created),
                                                   reverse=True)


async def test_a_source_missing_the_budget_is_left_out_and_partial_is_set(
        make_stack, reader: InMemoryMetricReader) -> None:
    stack: Stack = await make_stack(timeline_budget_ms=50, celebrity_threshold=2)
    await stack.activate("reader")
    for follower in ("reader", "x"):
        await stack.fanout.follow(follower, "star")
    await stack.fanout.follow("reader", "bob")
    pushed, pulled = await stack.post("bob"), await stack.post("star")
    await stack.drain()
    real_pulled = stack.reader.sources.pulled

    async def stalled(author: str, before: int | None, limit: int) -> list[int]:
        # Fault injection: this one source answers long after the read's budget.
        await asyncio.sleep(1.0)
        return await real_pulled(author, before, limit)

    stack.reader.sources.pulled = stalled  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    started = loop.time()
    page = await stack.page("reader")
    assert loop.time() - started < 0.5  # did not wait for the stalled source
    assert page.partial
    assert [p.post_id for p, _ in page.entries] == [pushed.post_id]
    overruns = points(reader, "fanline.timeline.budget_overruns")
    # The stalled pulled list; then the inbox ran out on this page and the authors' own lists
    # that would fill it had no budget left either.
    assert {k[0][1]: p.value for k, p in overruns.items()} == {"pull": 1, "archive": 1}
    stack.reader.sources.pulled = real_pulled  # type: ignore[method-assign]
    page = await stack.page("reader")
    assert not page.partial
    assert [p.post_id for p, _ in page.entries] == [pulled.post_id, pushed.post_id]


async def test_deleted_posts_vanish_from_push_and_pull_timelines(make_stack) -> None:
    stack: Stack = await make_stack(celebrity_threshold=2)
    await stack.fanout.follow("reader", "bob")
    await stack.fanout.follow("reader", "star")
    await stack.fanout.follow("x", "star")
    await stack.activate("reader")
    pushed, pulled = await stack.post("bob"), await stack.post("star")
    await stack.drain()
    before = await stack.page("reader")
    assert {p.post_id for p, _ in before.entries} == {pushed.post_id, pulled.post_id}
    for post in (pushed, pulled):
        await stack.posts.DeletePost(
            post_pb2.DeletePostRequest(post_id=post.post_id, author_id=post.author_id)
        )
    # The delete event drops cached bodies and lists at once; no TTL wait needed.
    async def emptied() -> bool:
        return not (await stack.page("reader")).entries

    await async_wait_for(emptied, timeout_s=3, message="deleted posts to vanish")
    await stack.drain()
    assert await stack.inbox("reader") == []


async def test_unfollowed_pull_author_vanishes(make_stack) -> None:
    stack: Stack = await make_stack(celebrity_threshold=2)
    await stack.fanout.follow("reader", "star")
    await stack.fanout.follow("x", "star")
    await stack.activate("reader")
    await stack.post("star")
    await stack.drain()
    assert (await stack.page("reader")).entries
    await stack.fanout.unfollow("reader", "star")
    assert not (await stack.page("reader")).entries
    assert "star" not in await stack.store.graph.following("reader", 100)


async def test_many_pull_authors_are_matched_through_the_follow_set(make_stack) -> None:
    from fanline.timeline.sources import MERGED_LOOKUP_MAX

    stack: Stack = await make_stack()
    others = [f"celeb{i:04d}" for i in range(MERGED_LOOKUP_MAX + 50)]
    for followee in (others[3], others[-1], "pushy"):
        await stack.fanout.follow("reader", followee)
    many = frozenset([*others, "reader"])
    few = frozenset([others[3], "zzz", "reader"])
    _, followed = await stack.reader.sources.reader_state("reader", many, 2000)
    assert followed == [others[3], others[-1], "reader"]
    _, followed = await stack.reader.sources.reader_state("reader", few, 2000)
    assert followed == [others[3], "reader"]
