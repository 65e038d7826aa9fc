"""The key layout, without a store: where each key lives, and why each call stays in one slot."""

from __future__ import annotations

import pytest

from fanline.common.store.layout import (
    EPOCH_MS,
    SLOTS,
    Layout,
    LayoutError,
    id_time,
    slot_of,
    spread_tags,
)
from fanline.fanout import policy

USERS = [f"user{i}" for i in range(500)]


def masters_of(slots: list[int], masters: int) -> list[int]:
    """Which master of a standard contiguous slot split serves each slot."""
    return [slot * masters // SLOTS for slot in slots]


@pytest.mark.parametrize("count", [8, 64, 256, 1024])
def test_spread_tags_land_in_their_own_slot_range(count: int) -> None:
    tags = spread_tags(count, "b")
    assert len(set(tags)) == count
    for index, tag in enumerate(tags):
        assert index * SLOTS // count <= slot_of(tag) < (index + 1) * SLOTS // count


@pytest.mark.parametrize(("buckets", "masters"), [(64, 3), (64, 4), (256, 6), (1024, 10)])
def test_buckets_split_evenly_over_masters(buckets: int, masters: int) -> None:
    layout = Layout(buckets, 8)
    owners = masters_of([slot_of(layout.inbox_and_seen(b, ["x"])[0]) for b in range(buckets)],
                        masters)
    counts = [owners.count(m) for m in range(masters)]
    # A bucket whose slot sits next to a master's boundary may fall on either side of it.
    assert max(counts) - min(counts) <= 2


def test_every_key_of_a_user_is_in_one_slot_and_users_spread_over_buckets() -> None:
    layout = Layout(64, 8)
    for user in USERS[:50]:
        bucket = layout.bucket_of_user(user)
        keys = [layout.inbox(user), layout.seen(user), layout.following(user),
                layout.followers(user), layout.author_posts(user), layout.request(user, "r1"),
                layout.outbox(bucket), layout.last_post_id(bucket), layout.pull_authors(bucket),
                layout.merged_authors(bucket), layout.events(bucket),
                layout.local_followers(bucket, "some-author")]
        assert len({slot_of(k) for k in keys}) == 1, user
    buckets = [layout.bucket_of_user(u) for u in USERS]
    assert len(set(buckets)) == 64
    assert max(buckets.count(b) for b in range(64)) < 3 * len(USERS) / 64


def test_a_fanout_batch_is_one_slot() -> None:
    """A batch: the author's followers in one bucket, with their inboxes and stamps."""
    layout = Layout(64, 8)
    by_bucket: dict[int, list[str]] = {}
    for user in USERS:
        by_bucket.setdefault(layout.bucket_of_user(user), []).append(user)
    for bucket, followers in by_bucket.items():
        keys = [layout.local_followers(bucket, "star"), *layout.inbox_and_seen(bucket, followers)]
        assert len({slot_of(k) for k in keys}) == 1
        assert layout.inbox_and_seen(bucket, followers[:1]) == [
            layout.inbox(followers[0]), layout.seen(followers[0])]


def test_a_post_lives_in_its_authors_bucket_and_queue_partition() -> None:
    layout = Layout(128, 16)
    for author in USERS[:40]:
        bucket = layout.bucket_of_user(author)
        post_id = (123_456_789 << 12) + 5 * 128 + bucket  # as the id script composes it
        assert layout.bucket_of_post(post_id) == bucket
        assert slot_of(layout.post(post_id)) == slot_of(layout.author_posts(author))
        partition = layout.partition_of_post(post_id)
        assert partition == layout.partition_of_user(author)
        queue_keys = [layout.stream(partition), layout.queue_stats(partition),
                      layout.delivery(post_id), layout.chain(partition, "c1"),
                      layout.continuation(partition, "1-0")]
        assert len({slot_of(k) for k in queue_keys}) == 1


@pytest.mark.parametrize(("buckets", "partitions"), [(63, 8), (32, 8), (2048, 8), (64, 0), (64, 65)])
def test_unusable_counts_are_refused(buckets: int, partitions: int) -> None:
    with pytest.raises(LayoutError):
        Layout(buckets, partitions)


def test_post_ids_carry_their_time_and_bucket() -> None:
    layout = Layout(256, 8)
    post_id = layout.compose_post_id(1_790_000_000_000 - EPOCH_MS, 3, 200)
    assert id_time(post_id).timestamp() == pytest.approx(1_790_000_000, abs=0.001)
    assert layout.bucket_of_post(post_id) == 200
    assert layout.compose_post_id(1_790_000_000_001 - EPOCH_MS, 0, 0) > post_id  # time first
    assert post_id < 2**53 and layout.compose_post_id(2**41 - 1, 15, 255) < 2**53


@pytest.mark.parametrize(("followers", "buckets", "batch"),
                         [(1_001, 64, 1000), (5_000, 64, 1000), (100_000, 64, 1000),
                          (50_000_000, 256, 1000), (30, 64, 3)])
def test_bucket_ranges_cover_every_bucket_once_in_batch_sized_ranges(
        followers: int, buckets: int, batch: int) -> None:
    ranges = policy.bucket_ranges(followers, buckets, batch)
    covered = [b for lo, hi in ranges for b in range(lo, hi)]
    assert covered == list(range(buckets))
    assert all(hi > lo for lo, hi in ranges)
    per_range = followers * (ranges[0][1] - ranges[0][0]) / buckets
    assert per_range <= max(batch, followers / buckets)  # never far more than a batch per entry
    assert not policy.fits_one_batch(followers, batch)
    assert policy.fits_one_batch(batch, batch)
