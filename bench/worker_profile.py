"""Where one fan-out worker's time goes on a 100,000-follower post, and how busy the store is.

Runs a worker in this process against an embedded store, times each phase of a batch, and
reads the store's CPU use and per-command time (INFO cpu / commandstats) for the fan-out.
Run: `python -m bench.worker_profile`.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from typing import Any

from services.common import keys
from services.common.config import load_settings
from services.common.embedded import EmbeddedStore
from services.common.redis import connect
from services.fanout.queue import Job, JobKind
from services.fanout.service import Fanout
from services.fanout.worker import Worker

FOLLOWERS = 100_000


def timed(totals: dict[str, list[float]], obj: object, name: str) -> None:
    inner: Callable[..., Awaitable[Any]] = getattr(obj, name)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await inner(*args, **kwargs)
        finally:
            totals[name].append(time.perf_counter() - started)

    setattr(obj, name, wrapper)


async def main() -> None:
    with EmbeddedStore() as store:
        redis = connect(store.url)
        settings = load_settings({"FANLINE_REDIS_URL": store.url,
                                  "FANLINE_CELEBRITY_THRESHOLD": str(10**9)})
        fanout = Fanout(redis, settings)
        await fanout.start()
        worker = Worker(redis, settings, fanout.graph, fanout.modes, fanout.inboxes, fanout.queue)
        totals: dict[str, list[float]] = collections.defaultdict(list)
        for obj, name in [(fanout.graph, "followers_after"), (fanout.queue, "continue_chain"),
                          (fanout.inboxes, "push"), (fanout.queue, "ack")]:
            timed(totals, obj, name)
        now = int(time.time())
        for start in range(0, FOLLOWERS, 5000):
            async with redis.pipeline(transaction=False) as pipe:
                for i in range(start, min(FOLLOWERS, start + 5000)):
                    follower = f"f{i:06d}"
                    pipe.zadd(keys.followers("big"), {follower: 0})
                    pipe.zadd(keys.following(follower), {"big": 0})
                    pipe.set(keys.last_seen(follower), now)
                await pipe.execute()
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        await redis.set(keys.post("1000"), b"x")
        await redis.config_resetstat()
        cpu = await redis.info("cpu")
        cpu_before = cpu["used_cpu_user"] + cpu["used_cpu_sys"]
        started = time.perf_counter()
        await fanout.queue.enqueue(Job(JobKind.POST, "big", "1000", int(time.time() * 1000)),
                                   new_post=True)
        while (await fanout.queue.delivery("1000")).get("state") != "delivered":  # noqa: ASYNC110
            await asyncio.sleep(0.002)  # polling the store's delivery record
        wall = time.perf_counter() - started
        cpu = await redis.info("cpu")
        store_cpu = cpu["used_cpu_user"] + cpu["used_cpu_sys"] - cpu_before
        stats = await redis.info("commandstats")
        stop.set()
        await running
        print(f"{FOLLOWERS:,} followers in {wall:.2f} s: {FOLLOWERS / wall:,.0f} inbox writes/s, "
              f"{settings.worker_concurrency} loops; store CPU {store_cpu:.2f} s "
              f"({store_cpu / wall:.0%} of one core)")
        for name, calls in totals.items():
            print(f"  {name:16} {len(calls):4} calls, mean {sum(calls) / len(calls) * 1000:6.2f} ms")
        for name, row in sorted(stats.items(), key=lambda kv: -kv[1]["usec"])[:5]:
            print(f"  store {name.removeprefix('cmdstat_'):12} {row['calls']:7} calls, "
                  f"{row['usec'] / 1e6:.3f} s")
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
