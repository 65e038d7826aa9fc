import asyncio

from redis.asyncio import Redis

from services.common.ids import MAX_ID, PostIdGenerator, id_time


async def test_ids_are_unique_increasing_and_exact_as_scores(redis: Redis) -> None:
    generators = [PostIdGenerator(redis) for _ in range(4)]  # as if four processes
    ids = await asyncio.gather(*(g.next_id() for _ in range(500) for g in generators))
    assert len(set(ids)) == len(ids)
    assert max(ids) < MAX_ID
    sequential = [await generators[0].next_id() for _ in range(50)]
    assert sequential == sorted(sequential)
    assert sequential[0] > max(ids)
    assert float(sequential[-1]) == sequential[-1]  # survives a trip through a double score
    assert id_time(sequential[-1]).year >= 2026
