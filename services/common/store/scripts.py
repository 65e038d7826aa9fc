"""Every server-side script Fanline runs, each documented above its source.

Each script declares all the keys it touches, and every call passes keys of one slot (one
bucket or one queue partition, see layout.py); the `#!lua` line makes the server refuse any
cross-slot access, so a layout mistake fails loudly instead of running on one node only.
Scripts are loaded on every primary at start-up and reloaded on NOSCRIPT (a promoted replica
starts with an empty script cache). Every script is idempotent: a call retried after a lost
reply, a failover or a slot move has the effect of one call.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from string import Template

from fanline.common.store import records


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


def _lua(name: str, body: str) -> Script:
    # Field names of stored records come from records.py ($-placeholders), so a record's
    # format has one home even where a script writes it.
    names: dict[str, str] = {k: v for k, v in vars(records).items() if k.startswith("F_")}
    names.update({f"C_{c.name}": c.value for c in records.Counter})
    names.update({f"S_{s.name}": s.value for s in records.DeliveryState})
    names.update({f"E_{k.name}": k.value for k in records.EventKind})
    return Script(name, "#!lua\n" + Template(body.strip()).substitute(names) + "\n")


# Shared by the scripts that change inboxes, so a live watcher (WatchTimeline) hears of it:
# `watched(key, now)` tests whether a user has a watcher (the bucket's watchers set, scores =
# until when, ms); `announce` publishes one event naming the watched users a change reached,
# on the bucket's events channel (same slot), and nothing when nobody watches. A small set is
# read whole; a big one is asked per user.
_WATCHERS = """
local function watched(key, now)
  local n = redis.call('ZCARD', key)
  if n == 0 then return function() return false end end
  now = tonumber(now)
  if n > 64 then
    return function(user)
      local until_ms = redis.call('ZSCORE', key, user)
      return until_ms ~= false and tonumber(until_ms) >= now
    end
  end
  local set = {}
  for _, user in ipairs(redis.call('ZRANGEBYSCORE', key, now, '+inf')) do set[user] = true end
  return function(user) return set[user] == true end
end
local function announce(channel, head, users)
  if #users > 0 then redis.call('SPUBLISH', channel, head .. ' ' .. table.concat(users, ' ')) end
end
"""


# KEYS[1] = the bucket's last issued id.
# ARGV[1] = epoch (ms), ARGV[2] = bucket count, ARGV[3] = bucket.
# Returns the new id as a decimal string: ms * 4096 + sequence * buckets + bucket, or, when the
# bucket already issued an id at or past that, the next sequence after it (running ahead of the
# clock rather than repeating). Lua numbers are doubles: %.0f keeps all 53 bits.
NEXT_POST_ID = _lua("next_post_id", """
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[1])
local candidate = ms * 4096 + tonumber(ARGV[3])
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if candidate <= last then candidate = last + tonumber(ARGV[2]) end
local id = string.format('%.0f', candidate)
redis.call('SET', KEYS[1], id)
return id
""")

# KEYS[1] = post body, KEYS[2] = author's post list, KEYS[3] = the bucket's outbox,
# KEYS[4] (optional) = the author's request-id claim.
# ARGV[1] = post id, ARGV[2] = encoded body, ARGV[3] = encoded outbox entry, ARGV[4] = when the
# outbox entry is due (ms), ARGV[5] = claim TTL (s).
# Returns the id of the post the request names: ARGV[1], or the earlier post's id when the
# request id was claimed by another call (a retry), which then writes nothing.
CREATE_POST = _lua("create_post", """
if KEYS[4] then
  local earlier = redis.call('GET', KEYS[4])
  if earlier and earlier ~= ARGV[1] then return earlier end
  redis.call('SET', KEYS[4], ARGV[1], 'EX', tonumber(ARGV[5]))
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1])
redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[3])
return ARGV[1]
""")

# KEYS[1] = post body, KEYS[2] = author's post list, KEYS[3] = the bucket's outbox.
# ARGV[1] = post id, ARGV[2] = its publish hand-off (dropped: pointless now), ARGV[3] = the
# retract hand-off, ARGV[4] = when that is due (ms), ARGV[5] = the bucket's events channel,
# ARGV[6] = the encoded delete event. Returns 1.
DELETE_POST = _lua("delete_post", """
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[3])
redis.call('SPUBLISH', ARGV[5], ARGV[6])
return 1
""")

# KEYS[1] = the follower's following set, KEYS[2] = the author's followers in the follower's
# bucket. ARGV[1] = author, ARGV[2] = follower. Returns 1 if the edge is new.
FOLLOW_EDGE = _lua("follow_edge", """
local added = redis.call('ZADD', KEYS[1], 0, ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return added
""")

# KEYS[1] = the follower's following set, KEYS[2] = the author's followers in the follower's
# bucket, KEYS[3] = the follower's inbox. ARGV[1] = author, ARGV[2] = follower.
# Returns {1 if the edge existed, the inbox's oldest post id or 0}: every post of the author
# that can be in the inbox is at or above it.
UNFOLLOW_EDGE = _lua("unfollow_edge", """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
return {removed, oldest[2] or 0}
""")

# KEYS[1] = the bucket's merged authors, KEYS[2] = its pull authors.
# ARGV[1] = author, ARGV[2] = the bucket's events channel, ARGV[3] = the encoded mode event.
# Merged first: timelines read the author's list before workers stop pushing. Returns 1.
PROMOTE = _lua("promote", """
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SPUBLISH', ARGV[2], ARGV[3])
return 1
""")

# KEYS[1] = the bucket's pull authors, KEYS[2] = its merged authors.
# ARGV[1] = author, ARGV[2] = events channel, ARGV[3] = encoded mode event.
# Stops merging a demoted author's list once their backfill is done, unless they were promoted
# again meanwhile. Returns 1 if they stopped being merged, 0 if they are PULL.
FINISH_DEMOTION = _lua("finish_demotion", """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('SPUBLISH', ARGV[2], ARGV[3])
return 1
""")

# KEYS[1] = the author's followers in this bucket (the follow edges), KEYS[2] = the bucket's
# watchers, then per follower (inbox, activity stamp), all in one bucket.
# ARGV[1] = post id (member and score), ARGV[2] = inbox cap, ARGV[3] = active-since (unix s),
# ARGV[4] = now (ms), ARGV[5] = the bucket's events channel, ARGV[6] = the publishing request's
# traceparent ('-': none), ARGV[7..] = the followers, in the order of their key pairs.
# A follower whose last read is older than active-since (or who never read) is skipped: their
# inbox is rebuilt when they return. One who unfollowed while the batch was queued is skipped
# too, so an unfollow purge cannot be undone by an in-flight batch.
# Returns {written, skipped_inactive}; `written` counts inboxes that now hold the post, whether
# or not this call added it, so a batch re-run after a crash (never acknowledged, so never
# counted) is counted exactly once, and ZADD of an existing member keeps the entry single.
# Watchers hear only of entries this call added, so a re-run announces nothing twice.
PUSH = _lua("push", _WATCHERS + """
local id, cap, since = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local is_watched = watched(KEYS[2], ARGV[4])
local written, skipped, told = 0, 0, {}
for i = 3, #KEYS, 2 do
  local follower = ARGV[6 + (i - 1) / 2]
  local seen = redis.call('GET', KEYS[i + 1])
  if seen and tonumber(seen) >= since then
    if redis.call('ZSCORE', KEYS[1], follower) then
      local added = redis.call('ZADD', KEYS[i], id, id)
      written = written + 1
      if redis.call('ZCARD', KEYS[i]) > cap then
        redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -(cap + 1))
      end
      if added == 1 and is_watched(follower) then told[#told + 1] = follower end
    end
  else
    skipped = skipped + 1
  end
end
announce(ARGV[5], '$E_ADDED ' .. id .. ' ' .. ARGV[6], told)
return {written, skipped}
""")

# KEYS[1] = the bucket's watchers, [KEYS[2] = the author's followers in this bucket, when
# ARGV[1] = '1'], then per follower (inbox, activity stamp), all in one bucket.
# ARGV[1] = check follow edges (1/0), ARGV[2] = inbox cap, ARGV[3] = active-since (0 =
# everyone), ARGV[4] = n followers, ARGV[5] = now (ms), ARGV[6] = events channel, ARGV[7] =
# traceparent ('-': none), ARGV[8] = tell watchers (1/0: an author's own new post, not a
# backfill of old ones), ARGV[9 .. 8+n] = followers, then the post ids, newest first.
# Adds the ids an inbox lacks, but only down to the inbox's floor when it is full: an inbox
# must hold every pushed post above its oldest entry (the timeline relies on it to know when
# to continue from authors' own lists), and posts below a full inbox's floor would be trimmed
# straight away anyway. Returns {written, skipped_inactive}.
MERGE = _lua("merge", _WATCHERS + """
local check, cap, since, n = ARGV[1] == '1', tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local is_watched = ARGV[8] == '1' and watched(KEYS[1], ARGV[5]) or function() return false end
local first = check and 3 or 2
local written, skipped, told = 0, 0, {}
for f = 1, n do
  local inbox, seen = KEYS[first + 2 * (f - 1)], KEYS[first + 2 * (f - 1) + 1]
  local user = ARGV[8 + f]
  local stamp = redis.call('GET', seen)
  if since == 0 or (stamp and tonumber(stamp) >= since) then
    if not check or redis.call('ZSCORE', KEYS[2], user) then
      local floor = 0
      if redis.call('ZCARD', inbox) >= cap then
        floor = tonumber(redis.call('ZRANGE', inbox, 0, 0, 'WITHSCORES')[2])
      end
      for j = 9 + n, #ARGV do
        if tonumber(ARGV[j]) <= floor then break end
        local added = redis.call('ZADD', inbox, ARGV[j], ARGV[j])
        written = written + added
        if added == 1 and is_watched(user) then
          told[ARGV[j]] = told[ARGV[j]] or {}
          table.insert(told[ARGV[j]], user)
        end
      end
      if redis.call('ZCARD', inbox) > cap then
        redis.call('ZREMRANGEBYRANK', inbox, 0, -(cap + 1))
      end
    end
  else
    skipped = skipped + 1
  end
end
for id, users in pairs(told) do announce(ARGV[6], '$E_ADDED ' .. id .. ' ' .. ARGV[7], users) end
return {written, skipped}
""")

# KEYS[1] = the bucket's watchers, KEYS[2..] = inboxes of that bucket.
# ARGV[1] = now (ms), ARGV[2] = events channel, ARGV[3 .. 1+#KEYS] = the inboxes' owners, then
# the post ids to remove from each. Returns the entries removed.
REMOVE = _lua("remove", _WATCHERS + """
local is_watched = watched(KEYS[1], ARGV[1])
local first_id = #KEYS + 2
local removed, told = 0, {}
for i = 2, #KEYS do
  local user = ARGV[i + 1]
  for j = first_id, #ARGV do
    if redis.call('ZREM', KEYS[i], ARGV[j]) == 1 then
      removed = removed + 1
      if is_watched(user) then
        told[ARGV[j]] = told[ARGV[j]] or {}
        table.insert(told[ARGV[j]], user)
      end
    end
  end
end
for id, users in pairs(told) do announce(ARGV[2], '$E_REMOVED ' .. id, users) end
return removed
""")

# KEYS[1] = a returning reader's inbox. ARGV[1] = floor (0 = none): entries below it go, as
# older pages continue from the authors' lists; ARGV[2] = cap; ARGV[3..] = post ids.
# Returns the inbox size.
REBUILD_INBOX = _lua("rebuild_inbox", """
if tonumber(ARGV[1]) > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1]) end
for i = 3, #ARGV do redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i]) end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[2]) + 1))
return redis.call('ZCARD', KEYS[1])
""")

# KEYS[1] = the partition's stream, KEYS[2] = the job's chain (delivery) record, KEYS[3] = the
# partition's stats hash.
# ARGV[1] = the partition's bound (0 = none), ARGV[2] = record TTL (s), ARGV[3] = now (ms),
# ARGV[4] = trace id, ARGV[5] = a new post (1) or other work (0), ARGV[6] = created (ms),
# ARGV[7..] = the job's field/value pairs.
# Returns 1 queued, 0 queued before (a retried hand-off, or a retried call), -1 full.
ENQUEUE = _lua("enqueue", """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local bound = tonumber(ARGV[1])
if bound > 0 and redis.call('XLEN', KEYS[1]) >= bound then
  redis.call('HINCRBY', KEYS[3], '$C_REFUSED_QUEUE_FULL', 1)
  return -1
end
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 7))
redis.call('HSET', KEYS[2], '$F_STATE', '$S_QUEUED', '$F_QUEUED', ARGV[3], '$F_TRACE', ARGV[4],
           '$F_CREATED', ARGV[6], '$F_OPEN', 1)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
if ARGV[5] == '1' then redis.call('HINCRBY', KEYS[3], '$C_POSTS_PUBLISHED', 1) end
return 1
""")

# KEYS[1] = stream, KEYS[2] = chain record, KEYS[3] = continuation marker of the current entry.
# ARGV[1] = marker TTL (s), ARGV[2] = n batches, then per batch: its number of field/value
# arguments, then those arguments.
# Queues the batches after an entry once, however often the entry itself is processed.
# Returns 1 if queued now, 0 if queued before.
CONTINUE = _lua("continue", """
if not redis.call('SET', KEYS[3], '1', 'NX', 'EX', tonumber(ARGV[1])) then return 0 end
local n, i = tonumber(ARGV[2]), 3
for _ = 1, n do
  local count = tonumber(ARGV[i])
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + count))
  i = i + count + 1
end
redis.call('HINCRBY', KEYS[2], '$F_OPEN', n)
return 1
""")

# KEYS[1] = stream, KEYS[2] = stats hash, KEYS[3] = chain record.
# ARGV[1] = group, ARGV[2] = entry id, ARGV[3] = now (ms), ARGV[4] = inbox writes of the batch,
# ARGV[5] = number of counter pairs N, then N (stats field, increment) pairs, then record
# field/value pairs.
# Returns {counted, chain done, chain's total writes, lag ms}; counted = 0 when the entry had
# already been acknowledged (by a worker we took it from), which then changes nothing.
ACK = _lua("ack", """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return {0, 0, 0, 0} end
redis.call('XDEL', KEYS[1], ARGV[2])
local n, i = tonumber(ARGV[5]), 6
for _ = 1, n do
  if ARGV[i + 1] ~= '0' then redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]) end
  i = i + 2
end
while i < #ARGV do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local writes = redis.call('HINCRBY', KEYS[3], '$F_WRITES', ARGV[4])
if redis.call('HINCRBY', KEYS[3], '$F_OPEN', -1) > 0 then return {1, 0, writes, 0} end
local lag = 0
if redis.call('HGET', KEYS[3], '$F_STATE') ~= '$S_FAILED' then
  local created = tonumber(redis.call('HGET', KEYS[3], '$F_CREATED') or ARGV[3])
  if created == 0 then created = tonumber(ARGV[3]) end
  lag = math.max(0, tonumber(ARGV[3]) - created)
  redis.call('HSET', KEYS[3], '$F_STATE', '$S_DELIVERED', '$F_DONE', ARGV[3], '$F_LAG', lag)
end
return {1, 1, writes, lag}
""")

ALL: tuple[Script, ...] = (
    NEXT_POST_ID, CREATE_POST, DELETE_POST, FOLLOW_EDGE, UNFOLLOW_EDGE, PROMOTE,
    FINISH_DEMOTION, PUSH, MERGE, REMOVE, REBUILD_INBOX, ENQUEUE, CONTINUE, ACK,
)
