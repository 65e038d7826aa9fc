"""Post ids: issued per bucket in the store, with no central counter."""

from __future__ import annotations

import asyncio
import time

from fanline.common.store import Store
from fanline.common.store.layout import MAX_POST_ID, id_time


async def test_ids_are_unique_time_ordered_exact_and_name_the_authors_bucket(store: Store) -> None:
    others = [Store(store.client, store.layout, 1000) for _ in range(3)]  # as if four processes
    authors = [f"author{i}" for i in range(8)]
    created = await asyncio.gather(*(
        s.posts.create(a, "t", "", 0) for _ in range(40) for s in (store, *others) for a in authors
    ))
    ids = [int(c.post.post_id) for c in created if c.post]
    assert len(ids) == len(set(ids)) == 40 * 4 * 8
    assert max(ids) < MAX_POST_ID
    for c in created:
        assert c.post is not None
        post_id = int(c.post.post_id)
        # The id says where the post lives: its author's bucket.
        assert store.layout.bucket_of_post(post_id) == store.layout.bucket_of_user(c.post.author_id)
        assert float(post_id) == post_id  # survives a trip through a double score
        assert abs(id_time(post_id).timestamp() - time.time()) < 60
    # Within a bucket, ids only grow: a later post of author0 is above every earlier post of
    # its bucket, whoever wrote it.
    sequential = [int((await store.posts.create("author0", "t", "", 0)).post.post_id)  # type: ignore[union-attr]
                  for _ in range(50)]
    assert sequential == sorted(sequential)
    bucket = store.layout.bucket_of_user("author0")
    assert sequential[0] > max(i for i in ids if store.layout.bucket_of_post(i) == bucket)
