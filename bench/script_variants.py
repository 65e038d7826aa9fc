"""What each per-follower check in the push script costs the store.

Runs bare ZADD+trim, + the activity check, + the follow-edge check (the production script's
work) as server-side scripts over 1,000 followers, on empty and on full (800-entry) inboxes,
and reports the store's own time per call (INFO commandstats). Run:
`python -m bench.script_variants`.
"""

from __future__ import annotations

import asyncio
import time

from services.common import keys
from services.common.embedded import EmbeddedStore
from services.common.redis import connect

FOLLOWERS = 1000
INBOX_MAX = 800
REPEATS = 20

_LOOP = """
local id, cap, since, author = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
for i = 1, #KEYS, 3 do
  if %s then
    redis.call('ZADD', KEYS[i], id, id)
    if redis.call('ZCARD', KEYS[i]) > cap then
      redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -(cap + 1))
    end
  end
end
return 1
"""
ACTIVE = "tonumber(redis.call('GET', KEYS[i + 1]) or '0') >= since"
FOLLOWS = "redis.call('ZSCORE', KEYS[i + 2], author)"
VARIANTS = {
    "ZADD + trim": _LOOP % "true",
    "+ activity check": _LOOP % ACTIVE,
    "+ follow check (production)": _LOOP % f"{ACTIVE} and {FOLLOWS}",
}


async def main() -> None:
    with EmbeddedStore() as store:
        redis = connect(store.url)
        now = int(time.time())
        followers = [f"f{i:05d}" for i in range(FOLLOWERS)]
        async with redis.pipeline(transaction=False) as pipe:
            for f in followers:
                pipe.zadd(keys.following(f), {"author": 0})
                pipe.set(keys.last_seen(f), now)
            await pipe.execute()
        batch_keys = keys.fanout_write_keys(followers)
        for full in (False, True):
            if full:
                async with redis.pipeline(transaction=False) as pipe:
                    for f in followers:
                        pipe.zadd(keys.inbox(f), {str(i): i for i in range(1, INBOX_MAX + 1)})
                    await pipe.execute()
            for name, source in VARIANTS.items():
                script = redis.register_script(source)
                await script(keys=batch_keys, args=[10**9, INBOX_MAX, now - 60, "author"])
                await redis.config_resetstat()
                for i in range(REPEATS):
                    await script(keys=batch_keys, args=[10**9 + i, INBOX_MAX, now - 60, "author"])
                usec = (await redis.info("commandstats"))["cmdstat_evalsha"]["usec_per_call"]
                print(f"{'full' if full else 'empty'} inboxes  {name:30} {usec / 1000:5.2f} ms "
                      f"per {FOLLOWERS} followers  ({FOLLOWERS / usec * 1e6:,.0f} writes/s of store time)")
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
