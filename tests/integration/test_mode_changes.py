"""Authors crossing the celebrity threshold, up and down, while followers keep reading."""

from __future__ import annotations

from fanline.fanout.policy import Mode
from tests.integration.conftest import Stack


class VisibilityLog:
    """Checks every read of a timeline: no duplicates, and once a post has been seen it stays
    visible in every later read (none appears, disappears and reappears)."""

    def __init__(self) -> None:
        self.ever_seen: set[int] = set()
        self.reads = 0

    def check(self, ids: list[int]) -> None:
        self.reads += 1
        assert len(ids) == len(set(ids)), "a post appeared twice"
        assert ids == sorted(ids, reverse=True), "timeline out of order"
        vanished = self.ever_seen - set(ids)
        assert not vanished, f"posts flickered out: {sorted(vanished)}"
        self.ever_seen |= set(ids)


async def test_no_flicker_while_an_author_is_promoted_and_demoted(make_stack) -> None:
    # Promote at 4 followers, demote below 2 (ratio 0.5): hysteresis in between.
    stack: Stack = await make_stack(celebrity_threshold=4, demote_ratio=0.5, fanout_batch_size=2)
    readers = ["r1", "r2"]
    for reader in readers:
        await stack.fanout.follow(reader, "author")
    await stack.activate(*readers, "f1", "f2", "f3")
    logs = {r: VisibilityLog() for r in readers}
    posted: list[int] = []

    async def read_all() -> None:
        for reader in readers:
            logs[reader].check(await stack.all_ids(reader, size=3))

    async def post_and_read(n: int) -> None:
        for _ in range(n):
            posted.append(int((await stack.post("author")).post_id))
            await read_all()
            await stack.worker.step(block_ms=5)  # deliver while readers keep reading
            await read_all()

    async def set_followers(fans: list[str], follow: bool) -> None:
        for fan in fans:
            if follow:
                await stack.fanout.follow(fan, "author")
            else:
                await stack.fanout.unfollow(fan, "author")
            await read_all()

    await post_and_read(3)
    await set_followers(["f1", "f2"], follow=True)  # 4 followers: promoted
    assert (await stack.fanout.author("author")).mode is Mode.PULL
    await post_and_read(3)
    await set_followers(["f1"], follow=False)  # 3: inside the hysteresis band, stays PULL
    assert await stack.fanout.modes.mode("author") is Mode.PULL
    await post_and_read(2)
    await set_followers(["f2"], follow=False)  # 2: still >= 2, stays PULL
    await set_followers(["f2"], follow=True)
    readers.remove("r2")  # r2 leaves: their timeline rightly loses the author
    await set_followers(["f2", "r2"], follow=False)  # 1 follower: demoted, backfill queued
    assert await stack.fanout.modes.mode("author") is Mode.PUSH
    assert "author" in await stack.store.graph.merged_authors()  # still merged
    await post_and_read(3)
    while (await stack.store.queue.stats()).depth:
        await stack.worker.step(block_ms=5)
        await read_all()
    assert "author" not in await stack.store.graph.merged_authors()  # backfill done
    await read_all()
    assert await stack.all_ids("r1") == sorted(posted, reverse=True)
    assert set(await stack.inbox("r1")) == set(posted)  # everything now in the inbox
    assert logs["r1"].reads > 20


async def test_demotion_backfill_is_superseded_by_a_new_promotion(make_stack) -> None:
    stack: Stack = await make_stack(celebrity_threshold=2, demote_ratio=1.0)
    await stack.fanout.follow("r", "a")
    await stack.fanout.follow("s", "a")  # promoted
    await stack.fanout.unfollow("s", "a")  # demoted: backfill queued
    await stack.fanout.follow("s", "a")  # promoted again before the backfill ran
    await stack.drain()
    assert await stack.fanout.modes.mode("a") is Mode.PULL
    assert "a" in await stack.store.graph.merged_authors()  # still merged
